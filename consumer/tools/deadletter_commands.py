"""Operator tools for the dead-letter topic: list dead letters with their reasons, replay them.

Both read up to the end offsets found at start, so they finish even while new dead letters arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, aclosing
from types import TracebackType
from typing import Any, TextIO

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumer.config import KafkaSettings
from consumer.engine import connection
from consumer.engine import deadletter_headers as dl
from consumer.engine.admin import admin_client
from consumer.engine.deadletter_headers import dlq_fields
from consumer.engine.deadletter_publisher import request_size
from consumer.engine.printable import escape_controls
from consumer.errors import ConsumerError
from consumer.observability import tracing

FETCH_TIMEOUT_MS = 1_000


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
        _Reader(kafka, dlq_topic, group=None) as reader,
        aclosing(reader.batches()) as batches,
    ):
        async for batch in batches:
            for message in (m for records in batch.values() for m in records):
                if limit is not None and count >= limit:
                    return count
                out.write(_describe(message) + "\n")
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
) -> int:
    """Republish the dead letters matching every given filter to the topic `to`.

    `to` comes from the operator (the worker's source topic unless ``--to`` names another),
    never from a dead letter's own ``dlq.topic`` header: anyone who can write to the dead-letter
    topic can forge that one. Kafka's internal topics (``__*``) are refused.

    Progress is committed under `group` once a batch is acknowledged, so a replay resumes where
    the last one stopped and never republishes twice (a crash between the broker's ack and the
    commit repeats that one batch). Dead letters that do not match are passed over all the same:
    replaying them later, with other filters, needs another `group`. With `dry_run` nothing is
    published or committed. Returns how many were (or, dry, would be) replayed.

    A reference record (its value was too large to dead-letter) is replayed with the value
    refetched from its source offset; when the source topic no longer retains it, that is said
    and the dead letter is passed over. `max_request_size` is ``dead_letter.max_request_size``.
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
        producer = AIOKafkaProducer(
            **connection.client_options(kafka),
            acks="all",
            compression_type=kafka.producer_compression,
            max_request_size=await request_size(kafka, max_request_size),
        )
    replayed = 0
    async with _Reader(kafka, dlq_topic, group=group) as reader, AsyncExitStack() as stack:
        originals = _Originals(kafka, stack)
        if producer is not None:
            await connection.start(producer, kafka)
        try:
            async for batch in reader.batches():
                sent = []
                for message in (m for records in batch.values() for m in records):
                    fields = dlq_fields(message.headers)
                    if not matches(fields, message.value):
                        continue
                    where = _where(message)
                    value = message.value
                    if dl.VALUE_TOO_LARGE in fields:
                        # Only the source topic is read back: the header could name any topic.
                        if fields.get(dl.TOPIC) != kafka.topic:
                            out.write(
                                f"cannot replay {where}: its value was too large to dead-letter "
                                f"and {_source(fields)} is not in {kafka.topic}; skipped\n"
                            )
                            continue
                        value = await originals.value(fields)
                        if value is None:
                            out.write(
                                f"cannot replay {where}: its value was too large to dead-letter "
                                f"and {_source(fields)} is no longer retained; skipped\n"
                            )
                            continue
                    if producer is None:
                        out.write(f"would replay {where} to {to}\n")
                        replayed += 1
                    else:
                        headers = [
                            (k, v) for k, v in message.headers if not k.startswith(dl.PREFIX)
                        ]
                        headers.append((dl.REPLAYED_FROM, where.encode()))
                        headers = tracing.replayed(headers, to)
                        future = await producer.send(to, value, key=message.key, headers=headers)
                        sent.append((future, f"replayed {where} to {to}\n"))
                for future, line in sent:
                    await future
                    out.write(line)
                replayed += len(sent)
                if producer is not None:
                    await reader.commit(batch)
        finally:
            if producer is not None:
                await producer.stop()
    return replayed


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
    # Headers and values are the producer's: escaped, they cannot drive the terminal.
    line = " ".join(
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
    return escape_controls(line)


class _Originals:
    """Refetches the source records of reference records, by partition and offset."""

    def __init__(self, kafka: KafkaSettings, stack: AsyncExitStack) -> None:
        self._kafka = kafka
        self._stack = stack
        self._consumer: Any = None

    async def value(self, fields: dict[str, str]) -> bytes | None:
        """The source record's value, or None when the topic no longer retains that offset."""
        try:
            tp = TopicPartition(self._kafka.topic, int(fields[dl.PARTITION]))
            offset = int(fields[dl.OFFSET])
        except (KeyError, ValueError):
            return None  # headers that name no record cannot be read back
        consumer = await self._started()
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if not first <= offset < end:
            return None
        consumer.seek(tp, offset)
        async with asyncio.timeout(60):
            while await consumer.position(tp) <= offset:
                fetched = await consumer.getmany(tp, timeout_ms=FETCH_TIMEOUT_MS)
                found = [record for record in fetched.get(tp, []) if record.offset >= offset]
                if found:
                    # A later offset first means the record was compacted away.
                    value: bytes | None = found[0].value if found[0].offset == offset else None
                    return value
        return None

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


class _Reader:
    """A consumer of every partition of `topic`, from the group's position (or the beginning)
    up to the end offsets seen at start; no group membership, so there is no rebalance to wait on.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, group: str | None) -> None:
        self._kafka = kafka
        self._topic = topic
        self._group = group
        self._consumer: Any = None
        self._ends: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> _Reader:
        partitions = await self._partitions()
        # Built only now: a consumer that is never started warns when collected.
        self._consumer = AIOKafkaConsumer(
            **connection.client_options(self._kafka),
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=self._kafka.isolation_level,
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

    async def _partitions(self) -> list[TopicPartition]:
        # Asking a consumer for the partitions of a missing topic would auto-create it.
        async with admin_client(self._kafka) as admin:
            if self._topic not in await admin.list_topics():
                raise ConsumerError(f"topic {self._topic!r} does not exist")
            (described,) = await admin.describe_topics([self._topic])
        return [TopicPartition(self._topic, p["partition"]) for p in described["partitions"]]

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


async def read_all(kafka: KafkaSettings, topic: str) -> list[Any]:
    """Every record of `topic` up to its end offsets now, oldest first per partition."""
    async with (
        _Reader(kafka, topic, group=None) as reader,
        aclosing(reader.batches()) as batches,
    ):
        return [m async for batch in batches for records in batch.values() for m in records]
