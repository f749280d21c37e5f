"""Backpressure: a bound on fetched, unfinished messages, held per partition.

Over ``engine.max_buffered``, the partitions holding unfinished work are paused; each resumes
once half of what it held has finished. Only what is behind stops: a partition stuck behind one
message (whose dead letter cannot be written yet, say) holds its own fetched messages, not the
others'. A partition with nothing unfinished keeps fetching and is paused at the next check if
the bound is still reached, so the bound is passed by at most a fetch.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Protocol

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.engine.committer import partition_names


class Unfinished(Protocol):
    """What backpressure reads: the `Committer`'s count of fetched, unfinished messages."""

    def in_flight(self, partitions: Iterable[TopicPartition] | None = None) -> int: ...


class Backpressure:
    """Pauses and resumes the consumer's partitions after each fetch."""

    def __init__(self, max_buffered: int, offsets: Unfinished) -> None:
        self._bound = max_buffered
        self._offsets = offsets
        self._paused: dict[TopicPartition, int] = {}
        """Partitions paused, with the unfinished messages each held then."""
        self._log = structlog.get_logger("consumer.worker")

    @property
    def paused(self) -> int:
        """How many partitions are paused now."""
        return len(self._paused)

    def apply(self, consumer: AIOKafkaConsumer) -> None:
        offsets, paused = self._offsets, self._paused
        resumed = [tp for tp, held in paused.items() if offsets.in_flight((tp,)) <= held // 2]
        if resumed:
            consumer.resume(*resumed)
            for tp in resumed:
                del paused[tp]
            self._log.debug("resumed", partitions=partition_names(resumed))
        buffered = offsets.in_flight()
        if buffered < self._bound:
            return
        behind = {
            tp: held
            for tp in consumer.assignment()
            if tp not in paused and tp not in resumed and (held := offsets.in_flight((tp,)))
        }
        if behind:
            consumer.pause(*behind)
            paused.update(behind)
            # Debug: while one partition is stuck the others pause and resume at every fetch.
            self._log.debug("paused", partitions=partition_names(behind), buffered=buffered)

    def forget(self, partitions: Collection[TopicPartition]) -> None:
        """Revoked partitions are no longer this worker's to pause."""
        for tp in partitions:
            self._paused.pop(tp, None)
