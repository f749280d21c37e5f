"""Operator tools for the dead-letter topic: list dead letters with their reasons, replay them.

Both read through `Reader`, up to the end offsets found at start, so they finish even while new
dead letters arrive.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, aclosing
from typing import Any, NamedTuple, TextIO

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from consumer.config import KafkaSettings
from consumer.engine import connection
from consumer.engine import deadletter_headers as dl
from consumer.engine.deadletter_headers import dlq_fields, malformed_header
from consumer.engine.deadletter_publisher import request_size
from consumer.engine.printable import print_escaped
from consumer.engine.producer import build_producer
from consumer.errors import ConsumerError
from consumer.observability import tracing
from consumer.redaction import error_line
from consumer.tools.topic_reader import FETCH_TIMEOUT_MS, Reader, topic_partitions

REFETCH_TIMEOUT = 60.0
"""Seconds reading back one reference record's value may take before replay stops."""


class NotReplayable(Exception):
    """A dead letter replay passes over, for the reason given: its headers are forged or
    broken, or the source record they name is gone or is not the one that failed."""


class ReplayCounts(NamedTuple):
    """What a replay did; `skipped` decides the command's exit status."""

    replayed: int
    """Republished (with `dry_run`: would be)."""
    skipped: int
    """Matched the filters but could not be replayed; each got a ``cannot replay`` line."""


class _Ids(msgspec.Struct, rename="camel"):
    recording_id: str | None = None


_ids = msgspec.json.Decoder(_Ids)


def recording_id_of(value: bytes | None) -> str | None:
    """The event's recordingId, or None when the value is not an event that has one."""
    try:
        return _ids.decode(value or b"").recording_id
    except msgspec.DecodeError:
        return None


async def show(kafka: KafkaSettings, dlq_topic: str, limit: int | None, out: TextIO) -> int:
    """Print one line per dead letter (at most `limit`), oldest first per partition."""
    count = 0
    async with (
        Reader(kafka, dlq_topic, group=None) as reader,
        aclosing(reader.batches()) as batches,
    ):
        async for batch in batches:
            for message in (m for records in batch.values() for m in records):
                if limit is not None and count >= limit:
                    return count
                print_escaped(_describe(message), out)
                count += 1
    return count


async def replay(
    kafka: KafkaSettings,
    dlq_topic: str,
    group: str,
    *,
    to: str,
    error_class: str | None,
    handler: str | None,
    recording_id: str | None,
    dry_run: bool,
    out: TextIO,
    max_request_size: int | None = None,
) -> ReplayCounts:
    """Republish the dead letters matching every given filter to the topic `to`.

    `to` comes from the operator (the worker's source topic unless ``--to`` names another),
    never from a dead letter's own ``dlq.topic`` header: anyone who can write to the dead-letter
    topic can forge that one. Kafka's internal topics (``__*``) are refused.

    Progress is committed under `group` once a batch is acknowledged, so a replay resumes where
    the last one stopped and never republishes twice (a crash between the broker's ack and the
    commit repeats that one batch). Dead letters that do not match are passed over all the same:
    replaying them later, with other filters, needs another `group`. With `dry_run` nothing is
    published or committed.

    A reference record (its value, original headers or key did not fit the dead-letter topic)
    is replayed with what was left out refetched from its source offset. A dead letter that
    cannot be replayed gets one ``cannot replay`` line and is passed over like the others:
    ``dlq.*`` headers that are null, not UTF-8 or not numbers where numbers belong; a source
    partition that does not exist, an offset no longer retained, or a record whose size or
    timestamp is not the one the dead letter names. Reading back a source record that exists
    but does not come within `REFETCH_TIMEOUT` stops the replay (ConsumerError), that batch
    uncommitted.
    `max_request_size` is ``dead_letter.max_request_size``.
    """

    def matches(fields: dict[str, str], value: bytes | None) -> bool:
        if error_class is not None and fields.get(dl.ERROR_CLASS) != error_class:
            return False
        # dlq.handler lists every handler that gave up on the message, comma-separated.
        if handler is not None and handler not in fields.get(dl.HANDLER, "").split(","):
            return False
        return recording_id is None or recording_id_of(value) == recording_id

    if to.startswith("__"):
        raise ConsumerError(f"refusing to replay to {to!r}: it is an internal Kafka topic")
    producer = None
    if not dry_run:
        max_request = await request_size(kafka, max_request_size)
        producer = build_producer(kafka, max_request_size=max_request)
    replayed = skipped = 0
    async with Reader(kafka, dlq_topic, group=group) as reader, AsyncExitStack() as stack:
        originals = _Originals(kafka, stack)
        if producer is not None:
            await connection.start(producer, kafka)
        try:
            async for batch in reader.batches():
                sent = []
                for message in (m for records in batch.values() for m in records):
                    where = _where(message)
                    fields = dlq_fields(message.headers)
                    # Broken headers are named whatever the filters: they cannot be read either.
                    problem = malformed_header(message.headers)
                    if problem is None and not matches(fields, message.value):
                        continue
                    try:
                        if problem is not None:
                            raise NotReplayable(problem)
                        key, value, headers = await originals.record_for(message, fields)
                    except NotReplayable as exc:
                        print_escaped(f"cannot replay {where}: {exc}; skipped", out)
                        skipped += 1
                        continue
                    if producer is None:
                        print_escaped(f"would replay {where} to {to}", out)
                        replayed += 1
                    else:
                        headers.append((dl.REPLAYED_FROM, where.encode()))
                        headers = tracing.replayed(headers, to)
                        future = await producer.send(to, value, key=key, headers=headers)
                        sent.append((future, f"replayed {where} to {to}"))
                for future, line in sent:
                    await future
                    print_escaped(line, out)
                replayed += len(sent)
                if producer is not None:
                    await reader.commit(batch)
        finally:
            if producer is not None:
                await producer.stop()
    return ReplayCounts(replayed, skipped)


def _where(message: Any) -> str:
    return f"{message.topic}/{message.partition}/{message.offset}"


def _source(fields: dict[str, str]) -> str:
    return "/".join(fields.get(k, "?") for k in (dl.TOPIC, dl.PARTITION, dl.OFFSET))


def _describe(message: Any) -> str:
    fields = dlq_fields(message.headers)
    source = _source(fields)
    error = msgspec.json.encode(fields.get(dl.ERROR_MESSAGE, "")).decode()
    too_large = fields.get(dl.VALUE_TOO_LARGE)
    value = [] if too_large is None else [f"value=too-large:{too_large}-bytes-not-stored"]
    problem = malformed_header(message.headers)
    if problem is not None:
        value.append(f"malformed={msgspec.json.encode(problem).decode()}")
    # Headers and values are the producer's: `show` prints the line escaped.
    return " ".join(
        [
            f"{message.partition}/{message.offset}",
            f"from={source}",
            f"recordingId={recording_id_of(message.value) or '-'}",
            f"handler={fields.get(dl.HANDLER, '-')}",
            f"error={fields.get(dl.ERROR_CLASS, '-')}",
            f"message={error}",
            f"path={fields.get(dl.ERROR_PATH, '-')}",
            f"attempts={fields.get(dl.ATTEMPTS, '-')}",
            f"last={fields.get(dl.LAST_FAILURE, '-')}",
            *value,
        ]
    )


_LEFT_OUT = (dl.VALUE_TOO_LARGE, dl.HEADERS_DROPPED, dl.KEY_DROPPED)
"""Headers saying what a dead letter left out, to be refetched from the source record."""


class _Originals:
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
        source = _source(fields)
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
            consumer = AIOKafkaConsumer(
                **connection.client_options(self._kafka),
                enable_auto_commit=False,
                isolation_level=self._kafka.isolation_level,
            )
            await connection.start(consumer, self._kafka)
            self._stack.push_async_callback(consumer.stop)
            self._consumer = consumer
        return self._consumer
