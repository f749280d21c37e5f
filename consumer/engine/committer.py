"""The one owner of offsets and commits.

Fetched batches are recorded here, finished messages are marked here (by the scheduler, or by
the worker for those it skips), and only this module decides what is committed and when:
every ``commit_interval`` seconds, sooner once ``commit_every`` messages finished or once
everything fetched up to the end of the log finished, and for revoked partitions when they are
handed over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Iterable, Mapping, Sequence

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from consumer.engine.observers import HealthBeats
from consumer.engine.offsets import Batch, OffsetTracker
from consumer.engine.tally import Tally
from consumer.settings.config import EngineSettings


class Committer:
    """Offsets of the assigned partitions and the commits that move the group's positions."""

    def __init__(self, engine: EngineSettings, tally: Tally, health: HealthBeats) -> None:
        self._offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self._every = engine.commit_every
        self._interval = engine.commit_interval
        self._tally = tally
        self._health = health
        self._since = 0
        self._due = asyncio.Event()
        self._lock = asyncio.Lock()
        self._limits: dict[TopicPartition, int] = {}
        """Offsets no commit may pass: where a batch could not be read."""
        self._caught_up = False
        """The last fetch reached the end of every partition: finishing all that was fetched
        then commits at once, not at the next interval (an idle worker's group lag reads 0)."""
        self._waiters: list[tuple[dict[TopicPartition, int], asyncio.Future[None]]] = []
        self._log = structlog.get_logger("consumer.committer")

    def add(self, tp: TopicPartition, offsets: Sequence[int]) -> Batch:
        """Record a fetched batch of `tp` (offsets ascending) before any of it runs."""
        return self._offsets.add(tp, offsets)

    def finish(self, batch: Batch, index: int) -> None:
        """The `index`-th message of `batch` is done; a batch done makes a commit due sooner."""
        if self._offsets.finish(batch, index):
            self._since += len(batch.offsets)
            if self._since >= self._every or (self._caught_up and not self._offsets.in_flight()):
                self._due.set()

    def reached(self, tp: TopicPartition, position: int) -> None:
        """The consumer's position in `tp`: offsets below it that are no records (transaction
        markers) may be committed past once every record before them finished."""
        self._offsets.reached(tp, position)

    def fetched_to_end(self, caught_up: bool) -> None:
        """Whether the last fetch reached the end of every assigned partition."""
        self._caught_up = caught_up
        if caught_up and not self._offsets.in_flight() and self._offsets.uncommitted():
            self._due.set()

    def stop_at(self, tp: TopicPartition, offset: int) -> None:
        """Never commit `tp` past `offset` (a batch there could not be read)."""
        self._limits[tp] = offset

    def in_flight(self, partitions: Iterable[TopicPartition] | None = None) -> int:
        """Messages fetched and not finished."""
        return self._offsets.in_flight(partitions)

    def pending(self) -> bool:
        """Whether anything is unfinished, or finished and not committed."""
        return bool(self._offsets.in_flight() or self._offsets.uncommitted())

    def committed_offset(self, tp: TopicPartition) -> int | None:
        """The offset last committed for `tp` by this worker, if it committed one."""
        return self._offsets.committed_point(tp)

    def forget(self, partitions: Collection[TopicPartition]) -> None:
        """Hand revoked partitions over: their unfinished messages belong to the next owner."""
        self._offsets.forget(partitions)

    async def wait_committed(self, points: Mapping[TopicPartition, int]) -> None:
        """Return once every partition's committed offset is at least its point in `points`."""
        wanted = dict(points)
        if self._reached(wanted):
            return
        waiter = asyncio.get_running_loop().create_future()
        entry = (wanted, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    async def run(self, consumer: AIOKafkaConsumer) -> None:
        """Commit every interval, or sooner once `commit_every` messages finished."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._due.wait()
            await self.commit(consumer)

    async def commit(
        self, consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition] | None = None
    ) -> None:
        """Commit what finished (of `partitions`, or all); a failed commit is retried later."""
        async with self._lock:
            self._due.clear()
            self._since = 0
            points = self._offsets.uncommitted(partitions)
            # aiokafka refuses a whole commit naming one partition it no longer has assigned;
            # that partition's progress is its next owner's, the others' must not wait for it.
            assigned = consumer.assignment()
            points = {tp: offset for tp, offset in points.items() if tp in assigned}
            for tp, limit in self._limits.items():
                # The client may have moved its position past a batch it gave up on.
                if points.get(tp, 0) > limit:
                    points[tp] = limit
            if not points:
                return
            try:
                await consumer.commit(points)
            except KafkaError as exc:
                # Nothing is lost: the points stay uncommitted and a later commit sends them.
                self._tally.commit_failures += 1
                self._log.warning("commit failed", error=repr(exc))
                return
            self._offsets.committed(points)
            self._tally.commits += 1
            self._health.committed(points)
            for wanted, waiter in self._waiters:
                if not waiter.done() and self._reached(wanted):
                    waiter.set_result(None)
        self._log.debug(
            "committed", offsets={f"{tp.topic}/{tp.partition}": o for tp, o in points.items()}
        )

    def _reached(self, wanted: Mapping[TopicPartition, int]) -> bool:
        committed = self._offsets.committed_point
        return all((committed(tp) or 0) >= offset for tp, offset in wanted.items())


def partition_names(partitions: Iterable[TopicPartition]) -> list[str]:
    """``topic/partition`` names, sorted, for log lines."""
    return sorted(_name(tp) for tp in partitions)


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}/{tp.partition}"
