"""Publishing dead letters for sure: the original message with headers saying what failed.

The headers are `consumer.deadletters.headers`'s, the one schema the tools read too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from consumer.backoff import Backoff
from consumer.deadletters.headers import (
    HEADERS_DROPPED,
    KEY_DROPPED,
    VALUE_TOO_LARGE,
    Failure,
    dlq_headers,
    original_headers,
)
from consumer.handler_api import Record
from consumer.kafka.topics import admin_client, create_topic, max_message_bytes, partitions
from consumer.settings.config import DeadLetterSettings, KafkaSettings, Settings

HEADER_ROOM = 64 * 1024
"""Bytes allowed beyond the source topic's limit for the ``dlq.*`` headers and batch framing."""
DEFAULT_REQUEST_SIZE = 1_048_576
"""aiokafka's own default, the least a dead-letter producer is given."""

BACKOFF = Backoff(0.5, 30.0, "half")
"""Between attempts to publish a dead letter: spread out, but never back-to-back."""


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
        (`max_message_bytes`, when given); replication and ``min.insync.replicas`` are the
        settings' or else the broker's defaults, so a production cluster's policy applies.
        """
        limit = self._max_message_bytes
        replicas = self._settings.replication_factor
        min_insync = self._settings.min_insync_replicas
        configs = {"max.message.bytes": str(limit)} if limit is not None else {}
        if min_insync is not None:
            configs["min.insync.replicas"] = str(min_insync)
        try:
            async with admin_client(self._kafka) as admin:
                partitions = await self._source_partitions(admin)
                if await create_topic(admin, self.topic, partitions, configs, replicas or -1):
                    self._log.info(
                        "dead-letter topic created",
                        partitions=partitions,
                        max_message_bytes=limit,
                        replication_factor=replicas or "cluster default",
                        min_insync_replicas=min_insync or "cluster default",
                    )
        except Exception as exc:
            self._log.error("cannot create dead-letter topic", error=repr(exc))

    async def _source_partitions(self, admin: Any) -> int:
        if self._source_topic is None:
            return -1
        return len(await partitions(admin, self._source_topic)) or -1

    async def publish(self, record: Record, value: bytes | None, failure: Failure) -> None:
        """Return only once the broker acknowledged the dead letter; retry until then, logging
        every failure as an error (with whether Kafka deems it retriable).

        What does not fit in the dead-letter topic is left out, and the ``dlq.*`` headers say
        so: the value (`VALUE_TOO_LARGE`) or the original headers (`HEADERS_DROPPED`),
        whichever is larger, then everything the producer sent (`KEY_DROPPED` too). That bare
        reference holds only our own bounded headers, so no message can make its dead letter
        unwritable; when even it does not fit (the topic's limit is tiny),
        ``dead_letter.on_unwritable`` says whether to log and go on, or to retry until it fits.
        """
        originals = original_headers(record)
        ours = dlq_headers(record, self._group, failure, self._settings.error_max_bytes)
        where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        failures = 0
        while True:
            try:
                form, sizes = await self._send(record, value, originals, ours)
            except Exception as exc:
                if isinstance(exc, MessageSizeTooLargeError) and self._skip_unwritable:
                    self._log.error("dead letter unwritable, skipped", **where, error=repr(exc))
                    return
                failures += 1
                wait = BACKOFF.delay(failures)
                self._log.error(
                    "dead-letter publish failed",
                    **where,
                    failures=failures,
                    retriable=getattr(exc, "retriable", False),
                    retry_in=round(wait, 3),
                    error=repr(exc),
                )
                await asyncio.sleep(wait)
                await self.ensure_topic()
            else:
                if form != "whole":
                    self._log.warning(_LEFT_OUT[form], **where, **sizes)
                elif failures:
                    self._log.warning("dead-letter published after failures", **where)
                return

    @property
    def _skip_unwritable(self) -> bool:
        return self._settings.on_unwritable == "skip"

    async def _send(
        self,
        record: Record,
        value: bytes | None,
        originals: list[tuple[str, bytes | None]],
        ours: list[tuple[str, bytes]],
    ) -> tuple[str, dict[str, int]]:
        """Publish the dead letter in the first of `_forms` that fits; which, and the sizes of
        what it left out. Raises MessageSizeTooLargeError when not even the last one fits."""
        forms = _forms(record, value, originals)
        for n, (form, form_value, key, keep, left_out) in enumerate(forms, 1):
            headers = [*(originals if keep else ()), *ours, *left_out]
            try:
                await self._producer.send_and_wait(self.topic, form_value, key=key, headers=headers)
            except MessageSizeTooLargeError:
                if n == len(forms):
                    raise
                continue
            return form, {_SIZE_FIELDS[name]: int(size) for name, size in left_out}
        raise AssertionError("no form to send")


_LEFT_OUT = {
    "value": "dead-lettered as a reference record: value too large",
    "headers": "dead-lettered as a reference record: headers too large",
    "bare": "dead-lettered as a bare reference record",
}
_SIZE_FIELDS = {
    VALUE_TOO_LARGE: "value_bytes",
    HEADERS_DROPPED: "headers_bytes",
    KEY_DROPPED: "key_bytes",
}

_Form = tuple[str, bytes | None, bytes | None, bool, list[tuple[str, bytes]]]


def _forms(
    record: Record, value: bytes | None, originals: list[tuple[str, bytes | None]]
) -> list[_Form]:
    """The dead letter whole, then less its value or its original headers (whichever is larger),
    then bare: the ``dlq.*`` headers alone, holding nothing the producer sent, so it fits any
    topic that takes a few kilobytes. Each: (name, value, key, keep the original headers,
    ``dlq.*`` headers saying what was left out)."""
    if value is None and record.key is None:
        value = b""  # Kafka takes no record without a key or a value
    size = len(value or b"")
    header_size = sum(len(name.encode()) + len(v or b"") for name, v in originals)
    value_gone = [(VALUE_TOO_LARGE, str(size).encode())] if size else []
    headers_gone = [(HEADERS_DROPPED, str(header_size).encode())] if originals else []
    key_gone = [(KEY_DROPPED, str(len(record.key)).encode())] if record.key else []
    forms: list[_Form] = [("whole", value, record.key, True, [])]
    if size > header_size:
        forms.append(("value", b"", record.key, True, value_gone))
    elif originals:
        forms.append(("headers", value, record.key, False, headers_gone))
    bare = [*value_gone, *headers_gone, *key_gone]
    if bare != forms[-1][4]:
        forms.append(("bare", b"", None, False, bare))
    return forms
