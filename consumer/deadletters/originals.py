"""What a reference record left out of its dead letter (value, original headers, key), read back
from its source record for ``dlq replay``, which must match what the dead letter says of it."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from consumer.deadletters import headers as dl
from consumer.errors import ConsumerError
from consumer.kafka import connection
from consumer.kafka.clients import build_consumer
from consumer.kafka.topic_reader import FETCH_TIMEOUT_MS, topic_partitions
from consumer.redaction import error_line
from consumer.settings.config import KafkaSettings

REFETCH_TIMEOUT = 60.0
"""Seconds reading back one reference record's value may take before replay stops."""


class NotReplayable(Exception):
    """A dead letter replay passes over, for the reason given: its headers are forged or
    broken, or the source record they name is gone or is not the one that failed."""


def source_of(fields: dict[str, str]) -> str:
    """The source record a dead letter names, as ``topic/partition/offset``."""
    return "/".join(fields.get(k, "?") for k in (dl.TOPIC, dl.PARTITION, dl.OFFSET))


_LEFT_OUT = (dl.VALUE_TOO_LARGE, dl.HEADERS_DROPPED, dl.KEY_DROPPED)
"""Headers saying what a dead letter left out, to be refetched from the source record."""


class Originals:
    """Refetches what reference records left out from their source records."""

    def __init__(self, kafka: KafkaSettings, stack: AsyncExitStack) -> None:
        self._kafka = kafka
        self._stack = stack
        self._consumer: Any = None
        self._partitions: set[int] | None = None

    async def record_for(
        self, message: Any, fields: dict[str, str]
    ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]:
        """The key, value and headers to replay for the dead letter `message`: its own, with
        what its dead letter left out (value, original headers, key) refetched from the source
        record, which must have the size and timestamp the dead letter names."""
        key: bytes | None = message.key
        value: bytes | None = message.value
        headers = [(k, v) for k, v in message.headers if not k.startswith(dl.PREFIX)]
        if not any(name in fields for name in _LEFT_OUT):
            return key, value, headers
        source = source_of(fields)
        # Only the source topic is read back: the header could name any topic.
        if fields.get(dl.TOPIC) != self._kafka.topic:
            raise NotReplayable(
                f"parts of it were left out of its dead letter and {source} is not in "
                f"{self._kafka.topic}"
            )
        try:
            partition, offset = int(fields[dl.PARTITION]), int(fields[dl.OFFSET])
            timestamp = int(fields[dl.TIMESTAMP])
        except KeyError as exc:
            raise NotReplayable(f"header {exc.args[0]} is missing") from None
        # Asked of a partition the topic does not have, the consumer would wait for its leader.
        if partition not in await self._source_partitions():
            raise NotReplayable(
                f"parts of it were left out of its dead letter and {source} names a partition "
                f"{self._kafka.topic} does not have"
            )
        consumer = await self._started()
        tp = TopicPartition(self._kafka.topic, partition)
        try:
            async with asyncio.timeout(REFETCH_TIMEOUT):
                record = await self._record(consumer, tp, offset)
        except (TimeoutError, KafkaError) as exc:
            raise ConsumerError(
                f"reading back {source} failed ({error_line(exc)}); replay stopped "
                "before committing this batch: run it again"
            ) from None
        except UnicodeDecodeError:
            raise NotReplayable(f"{source} has a header key that is not UTF-8") from None
        if record is None:
            raise NotReplayable(
                f"parts of it were left out of its dead letter and {source} is no longer retained"
            )
        if record.timestamp != timestamp:
            raise NotReplayable(
                f"{source} was written at {record.timestamp}, the dead letter says {timestamp}"
            )
        if dl.VALUE_TOO_LARGE in fields:
            size, found = int(fields[dl.VALUE_TOO_LARGE]), len(record.value or b"")
            if found != size:
                raise NotReplayable(f"{source} holds {found} bytes, the dead letter says {size}")
            value = record.value
        if dl.HEADERS_DROPPED in fields:
            headers = list(record.headers)
        if dl.KEY_DROPPED in fields:
            key = record.key
        return key, value, headers

    @staticmethod
    async def _record(consumer: Any, tp: TopicPartition, offset: int) -> Any:
        """The record at `offset`, or None when the partition no longer retains it."""
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if not first <= offset < end:
            return None
        consumer.seek(tp, offset)
        while await consumer.position(tp) <= offset:
            fetched = await consumer.getmany(tp, timeout_ms=FETCH_TIMEOUT_MS)
            found = [record for record in fetched.get(tp, []) if record.offset >= offset]
            if found:
                # A later offset first means the record was compacted away.
                return found[0] if found[0].offset == offset else None
        return None

    async def _source_partitions(self) -> set[int]:
        if self._partitions is None:
            try:
                described = await topic_partitions(self._kafka, self._kafka.topic)
            except ConsumerError:
                described = []  # no source topic: no reference record can be read back
            self._partitions = {tp.partition for tp in described}
        return self._partitions

    async def _started(self) -> Any:
        if self._consumer is None:
            consumer = build_consumer(self._kafka)
            await connection.start(consumer, self._kafka)
            self._stack.push_async_callback(consumer.stop)
            self._consumer = consumer
        return self._consumer
