"""Publishing dead letters for sure: the original message with headers saying what failed.

The headers are `consumer.engine.deadletter_headers`'s, the one schema the tools read too.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from consumer.config import DeadLetterSettings, KafkaSettings, Settings
from consumer.engine.admin import admin_client, create_topic, max_message_bytes
from consumer.engine.deadletter_headers import VALUE_TOO_LARGE, Failure, dead_letter_headers
from consumer.interface import Record

HEADER_ROOM = 64 * 1024
"""Bytes allowed beyond the source topic's limit for the ``dlq.*`` headers and batch framing."""
DEFAULT_REQUEST_SIZE = 1_048_576
"""aiokafka's own default, the least a dead-letter producer is given."""

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


async def request_size(kafka: KafkaSettings, configured: int | None) -> int:
    """Bytes a produce request may take to carry any message of ``kafka.topic`` with headers:
    `configured` (``dead_letter.max_request_size``), else the topic's ``max.message.bytes``."""
    if configured is not None:
        return configured
    try:
        async with admin_client(kafka) as admin:
            limit = await max_message_bytes(admin, kafka.topic)
    except Exception as exc:
        structlog.get_logger("consumer.deadletter").warning(
            "cannot read the source topic's max.message.bytes", error=repr(exc)
        )
        limit = None
    return max(DEFAULT_REQUEST_SIZE, (limit or 0) + HEADER_ROOM)


def dead_letter_topic(settings: Settings) -> str:
    """The configured dead-letter topic, or ``<kafka.topic>.dlq``."""
    return settings.dead_letter.topic or f"{settings.kafka.topic}.dlq"


class DeadLetterPublisher:
    """Publishes dead letters through the worker's producer, retrying until the broker has them.

    `producer` must be started and use ``acks="all"``: a dead letter is the only copy once the
    source offset is committed.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        kafka: KafkaSettings,
        topic: str,
        group: str,
        settings: DeadLetterSettings,
        *,
        source_topic: str | None = None,
        max_message_bytes: int | None = None,
    ) -> None:
        self.topic = topic
        self._max_message_bytes = max_message_bytes
        self._producer = producer
        self._kafka = kafka
        self._group = group
        self._settings = settings
        self._source_topic = source_topic
        self._log = structlog.get_logger("consumer.deadletter").bind(dlq_topic=topic)

    async def ensure_topic(self) -> None:
        """Create the topic if missing; a failure is logged, not raised, as publishing retries.

        Partitions follow the source topic when it is known, and so does the largest message
        (`max_message_bytes`, when given); replication is the broker's default
        (``default.replication.factor``), so a production cluster's policy applies.
        """
        limit = self._max_message_bytes
        configs = {"max.message.bytes": str(limit)} if limit is not None else None
        try:
            async with admin_client(self._kafka) as admin:
                partitions = await self._source_partitions(admin)
                if await create_topic(admin, self.topic, partitions, configs):
                    self._log.info(
                        "dead-letter topic created", partitions=partitions, max_message_bytes=limit
                    )
        except Exception as exc:
            self._log.error("cannot create dead-letter topic", error=repr(exc))

    async def _source_partitions(self, admin: Any) -> int:
        if self._source_topic is None:
            return -1
        (described,) = await admin.describe_topics([self._source_topic])
        return len(described["partitions"]) if described["error_code"] == 0 else -1

    async def publish(self, record: Record, value: bytes | None, failure: Failure) -> None:
        """Return only once the broker acknowledged the dead letter; retry until then, logging
        every failure as an error (with whether Kafka deems it retriable).

        A value too large for the dead-letter topic is left out: a reference record (see
        `VALUE_TOO_LARGE`) goes instead, so no message can hold its partition back forever.
        """
        headers = dead_letter_headers(record, self._group, failure, self._settings.error_max_bytes)
        where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        delay = BACKOFF_FIRST
        failures = 0
        while True:
            try:
                whole = await self._send(record, value, headers)
            except Exception as exc:
                failures += 1
                # Half fixed, half random: retries spread out but never come back-to-back.
                wait = delay / 2 + random.uniform(0, delay / 2)
                self._log.error(
                    "dead-letter publish failed",
                    **where,
                    failures=failures,
                    retriable=getattr(exc, "retriable", False),
                    retry_in=round(wait, 3),
                    error=repr(exc),
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2, BACKOFF_MAX)
                await self.ensure_topic()
            else:
                if not whole:
                    self._log.warning(
                        "dead-lettered as a reference record: value too large",
                        **where,
                        value_bytes=len(value or b""),
                    )
                elif failures:
                    self._log.warning("dead-letter published after failures", **where)
                return

    async def _send(
        self, record: Record, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> bool:
        """Publish the dead letter whole, or as a reference record if its value is too large;
        True if whole."""
        if value is None and record.key is None:
            value = b""  # Kafka takes no record without a key or a value
        try:
            await self._producer.send_and_wait(self.topic, value, key=record.key, headers=headers)
        except MessageSizeTooLargeError:
            size = len(value or b"")
            # A value no larger than the headers is not why it does not fit: the topic refuses.
            if size <= sum(len(name) + len(v) for name, v in headers):
                raise
            reference = [*headers, (VALUE_TOO_LARGE, str(size).encode())]
            await self._producer.send_and_wait(self.topic, b"", key=record.key, headers=reference)
            return False
        return True
