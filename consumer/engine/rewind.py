"""Where each partition resumes when a fetch fails part-way.

aiokafka's `getmany` moves a partition's position as it hands that partition's records over,
before it reaches the next partition; if that one raises, the records already taken are lost
with the exception while their positions stay moved. The worker notes how far its intake took
each partition, and rewinds to there after such a failure.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Literal

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition


class TakenTo:
    """Per partition, the offset after what the intake took."""

    def __init__(self, auto_offset_reset: Literal["earliest", "latest"]) -> None:
        self._taken_to: dict[TopicPartition, int] = {}
        self._earliest = auto_offset_reset == "earliest"
        self._log = structlog.get_logger("consumer.worker")

    def took(self, tp: TopicPartition, offset: int) -> None:
        self._taken_to[tp] = offset

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._taken_to.pop(tp, None)

    async def rewind(
        self,
        consumer: AIOKafkaConsumer,
        partitions: Iterable[TopicPartition],
        owned: Collection[TopicPartition],
    ) -> TopicPartition | None:
        """Seek each of `partitions` still in `owned` back to where the intake left it; the
        first one whose place is unknown, if any (then nothing more is rewound)."""
        for tp in partitions:
            resume = await self._resume_point(consumer, tp)
            if resume is None:
                return tp
            position = await consumer.position(tp)
            # No await from the check to the seek: a rebalance cannot come between.
            if position != resume and tp in owned:
                consumer.seek(tp, resume)
                self._log.info(
                    "rewound after a failed fetch",
                    topic=tp.topic,
                    partition=tp.partition,
                    position=position,
                    offset=resume,
                )
        return None

    async def _resume_point(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
        """After what the intake took, else where the consumer started: the group's committed
        offset, or the beginning under ``auto_offset_reset = "earliest"``; None when unknown
        (``latest`` without a committed offset)."""
        taken_to = self._taken_to.get(tp)
        if taken_to is not None:
            return taken_to
        committed: int | None = await consumer.committed(tp)
        if committed is not None:
            return committed
        if self._earliest:
            beginning: int = (await consumer.beginning_offsets([tp]))[tp]
            return beginning
        return None
