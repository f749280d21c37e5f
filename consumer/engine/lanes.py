"""Ordering: jobs that share a key run one at a time, in arrival order; other keys run freely."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
J = TypeVar("J")


class Lanes(Generic[K, J]):
    """A queue per key; only the head of each queue may run."""

    __slots__ = ("_lanes",)

    def __init__(self) -> None:
        self._lanes: dict[K, deque[J]] = {}

    def push(self, key: K, job: J) -> bool:
        """Queue `job`; True when it is at the head and may run now."""
        lane = self._lanes.get(key)
        if lane is None:
            self._lanes[key] = deque((job,))
            return True
        lane.append(job)
        return False

    def pop(self, key: K) -> J | None:
        """Retire the head of `key`'s lane; returns the job that may run next, if any."""
        lane = self._lanes.get(key)
        if lane is None:
            return None
        lane.popleft()
        if lane:
            return lane[0]
        del self._lanes[key]
        return None

    def drop(self, which: Callable[[K], bool]) -> list[J]:
        """Forget every lane whose key matches; returns the jobs they held."""
        doomed = [key for key in self._lanes if which(key)]
        return [job for key in doomed for job in self._lanes.pop(key)]

    def __len__(self) -> int:
        return len(self._lanes)


class ReadyQueue(Generic[J]):
    """Jobs free to run, taken by a pool of worker tasks.

    asyncio.Queue wakes one waiting task per item put. Handlers that finish without
    suspending let the first woken task drain a whole fetched batch alone, so the other
    tasks woke for nothing: a hundred task switches per batch, more than the work itself.
    Here one waiter is woken at a time, and it passes the wake-up on when work remains.
    """

    __slots__ = ("_items", "_waiters", "_waking")

    def __init__(self) -> None:
        self._items: deque[J] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._waking = False
        """A waiter was woken and has not run yet."""

    def put(self, item: J) -> None:
        self._items.append(item)
        if not self._waking:
            self._wake()

    async def get(self) -> J:
        items = self._items
        while not items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._waking = False
                    self._wake()  # woken, then cancelled: someone else must take the work
                raise
            self._waking = False
        item = items.popleft()
        if items and not self._waking:
            self._wake()
        return item

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._waking = True
                return

    def __len__(self) -> int:
        return len(self._items)
