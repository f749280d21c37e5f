"""Dead letters: what failed, written as headers beside the original message, published for sure.

The error message in the headers is the exception's text. Handlers must not put credentials or
other secrets in exception messages: they end up in the dead-letter topic for anyone who reads it.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from consumer.config import DeadLetterSettings, KafkaSettings, Settings
from consumer.engine.admin import admin_client, create_topic, max_message_bytes
from consumer.errors import DecodeError
from consumer.interface import Record

PREFIX = "dlq."
TOPIC = "dlq.topic"
PARTITION = "dlq.partition"
OFFSET = "dlq.offset"
TIMESTAMP = "dlq.timestamp"
GROUP = "dlq.group"
HANDLER = "dlq.handler"
ERROR_CLASS = "dlq.error.class"
ERROR_MESSAGE = "dlq.error.message"
ERROR_PATH = "dlq.error.path"
ATTEMPTS = "dlq.attempts"
FIRST_FAILURE = "dlq.failure.first"
LAST_FAILURE = "dlq.failure.last"
REPLAYED_FROM = "dlq.replayed_from"
"""Set by ``dlq replay`` on a republished message: ``<dlq topic>/<partition>/<offset>``."""
VALUE_TOO_LARGE = "dlq.value.too_large"
"""On a reference record, the original value's size in bytes: the value did not fit in the
dead-letter topic and is left out (empty); ``dlq replay`` refetches it from the source offset."""

HEADER_ROOM = 64 * 1024
"""Bytes allowed beyond the source topic's limit for the ``dlq.*`` headers and batch framing."""
DEFAULT_REQUEST_SIZE = 1_048_576
"""aiokafka's own default, the least a dead-letter producer is given."""

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a message is dead-lettered."""

    handler: str | None
    """None when the message could not be decoded, so no handler saw it."""
    error_class: str
    message: str
    path: str | None
    """The JSON path a decode error points at, if any."""
    attempts: int
    first_failure: float
    last_failure: float
    """Both in seconds since the epoch."""

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        *,
        handler: str | None,
        attempts: int = 1,
        first_failure: float | None = None,
        last_failure: float | None = None,
    ) -> Failure:
        """The failure `exc` describes; times default to now."""
        last = time.time() if last_failure is None else last_failure
        return cls(
            handler=handler,
            error_class=type(exc).__name__,
            message=exc.reason if isinstance(exc, DecodeError) else str(exc),
            path=exc.path if isinstance(exc, DecodeError) else None,
            attempts=attempts,
            first_failure=last if first_failure is None else first_failure,
            last_failure=last,
        )


def dead_letter_headers(
    record: Record, group: str, failure: Failure, max_bytes: int
) -> list[tuple[str, bytes]]:
    """The original headers, then the ``dlq.*`` ones describing where it came from and why.

    Incoming ``dlq.*`` headers are dropped first: whoever produced the message could have forged
    them, and a forged ``dlq.handler`` or ``dlq.error.path`` would steer ``dlq replay --handler``
    and ``dlq show`` where ours leave that header out.
    """
    ours: list[tuple[str, str | bytes]] = [
        (TOPIC, record.topic),
        (PARTITION, str(record.partition)),
        (OFFSET, str(record.offset)),
        (TIMESTAMP, str(record.timestamp)),
        (GROUP, group),
    ]
    if failure.handler is not None:
        ours.append((HANDLER, failure.handler))
    ours += [
        (ERROR_CLASS, failure.error_class),
        (ERROR_MESSAGE, truncate_utf8(failure.message, max_bytes)),
    ]
    if failure.path is not None:
        ours.append((ERROR_PATH, failure.path))
    ours += [
        (ATTEMPTS, str(failure.attempts)),
        (FIRST_FAILURE, iso_utc(failure.first_failure)),
        (LAST_FAILURE, iso_utc(failure.last_failure)),
    ]
    encoded = [(name, v if isinstance(v, bytes) else v.encode()) for name, v in ours]
    kept = [(name, v) for name, v in record.headers if not name.startswith(PREFIX)]
    return [*kept, *encoded]


def truncate_utf8(text: str, max_bytes: int) -> bytes:
    """`text` as UTF-8, cut to at most `max_bytes` without splitting a character."""
    return text.encode()[:max_bytes].decode(errors="ignore").encode()


def iso_utc(seconds: float) -> str:
    """``2026-11-27T10:15:30.123Z``."""
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


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
