"""Offset bookkeeping: the commit point is one past the longest finished run, per partition.

Messages may finish in any order; committing past one still in flight would lose it on a crash,
so a partition's commit point only moves over a contiguous run of finished offsets. Offsets are
recorded a fetched batch at a time and finishing one only sets its flag: the commit point is
worked out when a commit asks for it, not per message. Offsets that never arrive as records
(transaction markers, aborted batches under read_committed) are passed over by the consumer's
position: once everything fetched is finished, the position is the point.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Sequence
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


class Batch:
    """One partition's records from one fetch: their offsets and which of them finished."""

    __slots__ = ("done", "left", "live", "offsets", "owner", "partition", "scanned")

    def __init__(
        self, owner: PartitionOffsets, partition: Hashable, offsets: Sequence[int]
    ) -> None:
        self.owner = owner
        self.partition = partition
        self.offsets = offsets
        self.done = bytearray(len(offsets))
        self.left = len(offsets)
        self.scanned = 0
        """Every offset before this index is finished."""
        self.live = True
        """False once the partition is handed over: its jobs belong to the next owner."""


class PartitionOffsets:
    """The fetched batches of one partition, oldest first, and the commit point they allow."""

    __slots__ = ("_batches", "_next", "unfinished")

    def __init__(self) -> None:
        self._batches: deque[Batch] = deque()
        self._next: int | None = None
        self.unfinished = 0

    def add(self, batch: Batch) -> None:
        if batch.left:  # an empty batch has no offset to move the point to
            self._batches.append(batch)
            self.unfinished += batch.left

    def reached(self, position: int) -> None:
        """The consumer's position is `position`, every record below it having been added."""
        self._settle()
        if not self._batches and (self._next is None or position > self._next):
            self._next = position

    @property
    def commit_point(self) -> int | None:
        """The offset to commit (the next one to read after a restart), or None if none finished."""
        self._settle()
        return self._next

    def _settle(self) -> None:
        batches = self._batches
        while batches:
            head = batches[0]
            if head.left == 0:
                batches.popleft()
                self._next = head.offsets[-1] + 1
                continue
            done, index = head.done, head.scanned
            while done[index]:
                index += 1
            if index:
                head.scanned = index
                self._next = head.offsets[index - 1] + 1
            return

    def drop(self) -> None:
        for batch in self._batches:
            batch.live = False
        self._batches.clear()
        self.unfinished = 0


class OffsetTracker(Generic[P]):
    """Commit points for every assigned partition, and which of them moved since the last commit."""

    __slots__ = ("_committed", "_partitions")

    def __init__(self) -> None:
        self._partitions: dict[P, PartitionOffsets] = {}
        self._committed: dict[P, int] = {}

    def add(self, partition: P, offsets: Sequence[int]) -> Batch:
        """Record a fetched batch (offsets ascending); its jobs finish through `finish`."""
        state = self._partitions.get(partition)
        if state is None:
            state = self._partitions[partition] = PartitionOffsets()
        batch = Batch(state, partition, offsets)
        state.add(batch)
        return batch

    def finish(self, batch: Batch, index: int) -> bool:
        """The batch's `index`-th message is finished; True when that finished the batch."""
        if not batch.live:
            return False  # handed over meanwhile: the next owner commits it
        batch.done[index] = 1
        batch.left -= 1
        batch.owner.unfinished -= 1
        return batch.left == 0

    def reached(self, partition: P, position: int) -> None:
        state = self._partitions.get(partition)
        if state is None:
            state = self._partitions[partition] = PartitionOffsets()
        state.reached(position)

    def uncommitted(self, partitions: Iterable[P] | None = None) -> dict[P, int]:
        """Commit points that moved since they were last committed."""
        selected = self._partitions if partitions is None else partitions
        moved = {}
        for partition in selected:
            state = self._partitions.get(partition)
            point = state.commit_point if state else None
            if point is not None and self._committed.get(partition) != point:
                moved[partition] = point
        return moved

    def committed(self, points: dict[P, int]) -> None:
        self._committed.update(points)

    def committed_point(self, partition: P) -> int | None:
        """The commit point last committed for `partition`, if any."""
        return self._committed.get(partition)

    def in_flight(self, partitions: Iterable[P] | None = None) -> int:
        """Messages fetched and not finished."""
        states = self._partitions
        if partitions is None:
            return sum(state.unfinished for state in states.values())
        return sum(states[p].unfinished for p in partitions if p in states)

    def forget(self, partitions: Iterable[P]) -> None:
        """Drop revoked partitions: their unfinished messages belong to the next owner."""
        for partition in partitions:
            state = self._partitions.pop(partition, None)
            if state is not None:
                state.drop()
            self._committed.pop(partition, None)
