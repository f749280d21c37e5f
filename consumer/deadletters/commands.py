"""Operator tools for the dead-letter topic: list dead letters with their reasons, replay them.

Both read through `Reader`, up to the end offsets found at start, so they finish even while new
dead letters arrive. They write their lines through a `Say` and leave printing (escaped: headers
and values are the producer's) and tracing to the command line that calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack, aclosing
from typing import Any, NamedTuple

import msgspec

from consumer.deadletters import headers as dl
from consumer.deadletters.headers import dlq_fields, malformed_header
from consumer.deadletters.originals import NotReplayable, Originals, source_of
from consumer.deadletters.publisher import request_size
from consumer.errors import ConsumerError
from consumer.kafka import connection
from consumer.kafka.clients import build_producer
from consumer.kafka.topic_reader import Reader
from consumer.settings.config import KafkaSettings

Headers = list[tuple[str, bytes | None]]
Say = Callable[[str], None]
"""Takes each line a command prints, in order; the command line prints it escaped."""
Stamp = Callable[[Headers, str], Headers]
"""Given the headers of a message replay sends to a topic, the headers to send: the command line
passes tracing's, which adds the context of a send span."""


def _unstamped(headers: Headers, topic: str) -> Headers:
    return headers


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


async def show(kafka: KafkaSettings, dlq_topic: str, limit: int | None, say: Say) -> int:
    """One line per dead letter (at most `limit`) to `say`, oldest first per partition."""
    count = 0
    async with (
        Reader(kafka, dlq_topic, group=None) as reader,
        aclosing(reader.batches()) as batches,
    ):
        async for batch in batches:
            for message in (m for records in batch.values() for m in records):
                if limit is not None and count >= limit:
                    return count
                say(_show_line(message))
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
    say: Say,
    max_request_size: int | None = None,
    stamp: Stamp = _unstamped,
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
    but does not come within `originals.REFETCH_TIMEOUT` stops the replay (ConsumerError), that
    batch uncommitted.
    `max_request_size` is ``dead_letter.max_request_size``; `stamp` is applied to the headers
    of each message sent.
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
        originals = Originals(kafka, stack)
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
                        say(f"cannot replay {where}: {exc}; skipped")
                        skipped += 1
                        continue
                    if producer is None:
                        say(f"would replay {where} to {to}")
                        replayed += 1
                    else:
                        headers.append((dl.REPLAYED_FROM, where.encode()))
                        headers = stamp(headers, to)
                        future = await producer.send(to, value, key=key, headers=headers)
                        sent.append((future, f"replayed {where} to {to}"))
                for future, line in sent:
                    await future
                    say(line)
                replayed += len(sent)
                if producer is not None:
                    await reader.commit(batch)
        finally:
            if producer is not None:
                await producer.stop()
    return ReplayCounts(replayed, skipped)


def _where(message: Any) -> str:
    return f"{message.topic}/{message.partition}/{message.offset}"


def _show_line(message: Any) -> str:
    fields = dlq_fields(message.headers)
    source = source_of(fields)
    error = msgspec.json.encode(fields.get(dl.ERROR_MESSAGE, "")).decode()
    too_large = fields.get(dl.VALUE_TOO_LARGE)
    value = [] if too_large is None else [f"value=too-large:{too_large}-bytes-not-stored"]
    problem = malformed_header(message.headers)
    if problem is not None:
        value.append(f"malformed={msgspec.json.encode(problem).decode()}")
    # Headers and values are the producer's: the command line's `say` escapes the line.
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
