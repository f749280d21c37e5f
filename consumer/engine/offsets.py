"""Offset bookkeeping: the commit point is the first offset not yet finished, per partition.

Messages may finish in any order; committing past one still in flight would lose it on a crash,
so a partition's commit point only moves over a contiguous run of finished offsets. Offsets that
never arrive as records (transaction markers, aborted batches under read_committed) are passed
over by the consumer's position: once everything fetched is finished, the position is the point.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


class PartitionOffsets:
    """The fetched offsets of one partition, in order, and which of them are finished."""

    __slots__ = ("_done", "_next", "_pending")

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._next: int | None = None

    def add(self, offset: int) -> None:
        self._pending.append(offset)

    def finish(self, offset: int) -> None:
        pending, done = self._pending, self._done
        if not done and pending and pending[0] == offset:
            # Finishing in order is the common case: no set to fill and drain.
            pending.popleft()
            self._next = offset + 1
            return
        done.add(offset)
        while pending and pending[0] in done:
            done.discard(first := pending.popleft())
            self._next = first + 1

    def reached(self, position: int) -> None:
        """The consumer's position is `position`, every record below it having been added."""
        if not self._pending and (self._next is None or position > self._next):
            self._next = position

    @property
    def commit_point(self) -> int | None:
        """The offset to commit (the next one to read after a restart), or None if none finished."""
        return self._next

    @property
    def in_flight(self) -> int:
        return len(self._pending)


class OffsetTracker(Generic[P]):
    """Commit points for every assigned partition, and which of them moved since the last commit."""

    __slots__ = ("_committed", "_partitions")

    def __init__(self) -> None:
        self._partitions: dict[P, PartitionOffsets] = {}
        self._committed: dict[P, int] = {}

    def add(self, partition: P, offset: int) -> None:
        offsets = self._partitions.get(partition)
        if offsets is None:
            offsets = self._partitions[partition] = PartitionOffsets()
        offsets.add(offset)

    def finish(self, partition: P, offset: int) -> None:
        self._partitions[partition].finish(offset)

    def reached(self, partition: P, position: int) -> None:
        offsets = self._partitions.get(partition)
        if offsets is None:
            offsets = self._partitions[partition] = PartitionOffsets()
        offsets.reached(position)

    def uncommitted(self, partitions: Iterable[P] | None = None) -> dict[P, int]:
        """Commit points that moved since they were last committed."""
        selected = self._partitions if partitions is None else partitions
        moved = {}
        for partition in selected:
            offsets = self._partitions.get(partition)
            point = offsets.commit_point if offsets else None
            if point is not None and self._committed.get(partition) != point:
                moved[partition] = point
        return moved

    def committed(self, points: dict[P, int]) -> None:
        self._committed.update(points)

    def committed_point(self, partition: P) -> int | None:
        """The commit point last committed for `partition`, if any."""
        return self._committed.get(partition)

    def in_flight(self, partitions: Iterable[P] | None = None) -> int:
        selected = self._partitions if partitions is None else partitions
        return sum(self._partitions[p].in_flight for p in selected if p in self._partitions)

    def forget(self, partitions: Iterable[P]) -> None:
        """Drop revoked partitions: their unfinished messages belong to the next owner."""
        for partition in partitions:
            self._partitions.pop(partition, None)
            self._committed.pop(partition, None)
