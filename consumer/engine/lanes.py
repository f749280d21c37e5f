"""Ordering: jobs that share a key run one at a time, in arrival order; other keys run freely."""

from __future__ import annotations

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

    def drop(self, which: Callable[[K], bool]) -> int:
        """Forget every lane whose key matches; returns how many jobs were dropped."""
        doomed = [key for key in self._lanes if which(key)]
        return sum(len(self._lanes.pop(key)) for key in doomed)

    def __len__(self) -> int:
        return len(self._lanes)
