"""Ordering: jobs that share a key run one at a time, in arrival order; other keys run freely."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
J = TypeVar("J")


class Lanes(Generic[K, J]):
    """A queue per key; only the head of each queue may run.

    Most lanes hold one job at a time (a recording's events are minutes apart), so a lane's
    head is not stored: a key maps to None until a second job queues behind the head.
    """

    __slots__ = ("_lanes",)

    def __init__(self) -> None:
        self._lanes: dict[K, deque[J] | None] = {}

    def push(self, key: K, job: J) -> bool:
        """Queue `job`; True when it is at the head and may run now."""
        lanes = self._lanes
        if key not in lanes:
            lanes[key] = None
            return True
        behind = lanes[key]
        if behind is None:
            lanes[key] = deque((job,))
        else:
            behind.append(job)
        return False

    def pop(self, key: K) -> J | None:
        """Retire the head of `key`'s lane; returns the job that may run next, if any."""
        lanes = self._lanes
        behind = lanes.get(key)
        if behind is None:
            lanes.pop(key, None)
            return None
        following = behind.popleft()
        if not behind:
            lanes[key] = None
        return following

    def drop(self, which: Callable[[K], bool]) -> list[J]:
        """Forget every lane whose key matches; returns the jobs queued behind their heads."""
        doomed = [key for key in self._lanes if which(key)]
        return [job for key in doomed for job in (self._lanes.pop(key) or ())]

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

    def put_many(self, items: Iterable[J]) -> None:
        self._items.extend(items)
        if self._items and not self._waking:
            self._wake()

    def take(self) -> J | None:
        """The next item without waiting, or None; a waiter is woken for what remains."""
        items = self._items
        if not items:
            return None
        item = items.popleft()
        if items and not self._waking:
            self._wake()
        return item

    def drop(self, which: Callable[[J], bool]) -> list[J]:
        """Remove and return the items that match."""
        dropped = [item for item in self._items if which(item)]
        if dropped:
            self._items = deque(item for item in self._items if not which(item))
        return dropped

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
