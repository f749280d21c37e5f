"""Reading a whole topic as it is now: every partition up to the end offsets found at start,
with no group membership, so there is no rebalance to wait on and new records do not keep the
reader going. The dead-letter tools and the testing kit read through it."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from types import TracebackType
from typing import Any

from aiokafka import TopicPartition

from consumer.errors import ConsumerError
from consumer.kafka import connection
from consumer.kafka.clients import build_consumer
from consumer.kafka.topics import admin_client, partitions
from consumer.settings.config import KafkaSettings

FETCH_TIMEOUT_MS = 1_000


class Reader:
    """A consumer of every partition of `topic`, from the group's position (or the beginning)
    up to the end offsets seen at start; no group membership, so there is no rebalance to wait on.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, group: str | None) -> None:
        self._kafka = kafka
        self._topic = topic
        self._group = group
        self._consumer: Any = None
        self._ends: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> Reader:
        partitions = await topic_partitions(self._kafka, self._topic)
        # Built only now: a consumer that is never started warns when collected.
        self._consumer = build_consumer(
            self._kafka, group_id=self._group, auto_offset_reset="earliest"
        )
        await connection.start(self._consumer, self._kafka)
        try:
            self._consumer.assign(partitions)
            for tp in partitions:
                committed = await self._consumer.committed(tp) if self._group else None
                if committed is None:
                    await self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, committed)
            self._ends = await self._consumer.end_offsets(partitions)
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._consumer.stop()

    async def batches(self) -> AsyncGenerator[dict[TopicPartition, list[Any]], None]:
        """Fetched records, none at or past the end offsets; stops once every one is reached."""
        pending = [tp for tp, end in self._ends.items() if await self._consumer.position(tp) < end]
        while pending:
            fetched = await self._consumer.getmany(*pending, timeout_ms=FETCH_TIMEOUT_MS)
            batch = {
                tp: kept
                for tp, records in fetched.items()
                if (kept := [r for r in records if r.offset < self._ends[tp]])
            }
            if batch:
                yield batch
            pending = [tp for tp in pending if await self._consumer.position(tp) < self._ends[tp]]

    async def commit(self, batch: dict[TopicPartition, list[Any]]) -> None:
        if batch:
            await self._consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batch.items()})


async def topic_partitions(kafka: KafkaSettings, topic: str) -> list[TopicPartition]:
    """The partitions of `topic`; ConsumerError when it does not exist."""
    # Asking a consumer for the partitions of a missing topic would auto-create it.
    async with admin_client(kafka) as admin:
        if topic not in await admin.list_topics():
            raise ConsumerError(f"topic {topic!r} does not exist")
        return await partitions(admin, topic)


async def read_all(kafka: KafkaSettings, topic: str) -> list[Any]:
    """Every record of `topic` up to its end offsets now, oldest first per partition."""
    async with (
        Reader(kafka, topic, group=None) as reader,
        aclosing(reader.batches()) as batches,
    ):
        return [m async for batch in batches for records in batch.values() for m in records]
