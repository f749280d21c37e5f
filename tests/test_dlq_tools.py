"""`dlq show` and `dlq replay` against the real broker, on dead letters the publisher wrote."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from consumer.config import DeadLetterSettings, KafkaSettings
from consumer.engine import deadletter_headers as dl
from consumer.engine.admin import admin_client
from consumer.engine.deadletter_headers import Failure
from consumer.engine.deadletter_publisher import DeadLetterPublisher
from consumer.errors import ConsumerError, DecodeError, PermanentFailure
from consumer.interface import Record
from consumer.tools import deadletter_commands as dlq
from tests.support import committed_and_end, read_topic
from tests.test_deadletter import FIRST, LAST

UNDECODABLE = b'{"eventType": "recordingAvailable", "channels": "one"}'
"""Fails at $.channels, and has no recordingId to show."""
FAILURES = [
    ("r-1", Failure.from_exception(PermanentFailure("404"), handler="download", attempts=1)),
    ("r-2", Failure.from_exception(TimeoutError("slow"), handler="download", attempts=5)),
    ("r-3", Failure.from_exception(PermanentFailure("410"), handler="notify", attempts=1)),
]


async def _dead_letters(bootstrap: str, source: str) -> str:
    """Three handler failures and one undecodable message in a fresh `<source>.dlq`."""
    dlq_topic = f"{source}.dlq"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        publisher = DeadLetterPublisher(
            producer,
            KafkaSettings(bootstrap_servers=bootstrap),
            dlq_topic,
            "g",
            DeadLetterSettings(),
        )
        await publisher.ensure_topic()
        for offset, (rid, failure) in enumerate(FAILURES):
            record = Record(source, 0, offset, rid.encode(), (("traceparent", b"t"),), 1)
            value = msgspec.json.encode({"recordingId": rid, "status": "complete"})
            await publisher.publish(record, value, failure)
        undecodable = Failure.from_exception(
            DecodeError("Expected `int`, got `str`", "$.channels"),
            handler=None,
            first_failure=FIRST,
            last_failure=LAST,
        )
        await publisher.publish(Record(source, 0, 3, None, (), 1), UNDECODABLE, undecodable)
    finally:
        await producer.stop()
    return dlq_topic


async def test_show_lists_dead_letters_with_their_reasons(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """One line per dead letter: origin, recordingId, handler, error, path, attempts, time."""
    await create_topic(kafka_bootstrap, unique_name)
    dlq_topic = await _dead_letters(kafka_bootstrap, unique_name)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    out = io.StringIO()

    assert await asyncio.wait_for(dlq.show(kafka, dlq_topic, None, out), 60) == 4

    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"0/0 from={unique_name}/0/0 recordingId=r-1 handler=download ")
    assert 'error=PermanentFailure message="404" path=- attempts=1 last=' in lines[0]
    assert "recordingId=r-2 handler=download error=TimeoutError " in lines[1]
    assert "attempts=5" in lines[1]
    assert "recordingId=r-3 handler=notify error=PermanentFailure " in lines[2]
    assert lines[3] == (
        f"0/3 from={unique_name}/0/3 recordingId=- handler=- error=DecodeError "
        'message="Expected `int`, got `str`" path=$.channels attempts=1 '
        "last=2026-11-18T11:06:52.500Z"
    )
    limited = io.StringIO()
    assert await asyncio.wait_for(dlq.show(kafka, dlq_topic, 2, limited), 60) == 2
    assert limited.getvalue().splitlines() == lines[:2]


async def test_replay_republishes_only_matches_and_never_twice(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """Filters select r-1 alone; it returns with its key, value, headers; a rerun adds nothing."""
    await create_topic(kafka_bootstrap, unique_name)
    dlq_topic = await _dead_letters(kafka_bootstrap, unique_name)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    group, out = f"{unique_name}.replay", io.StringIO()

    replayed = await asyncio.wait_for(
        dlq.replay(
            kafka,
            dlq_topic,
            group,
            to=unique_name,
            error_class="PermanentFailure",
            handler="download",
            recording_id=None,
            dry_run=False,
            out=out,
        ),
        60,
    )

    assert replayed == 1
    assert out.getvalue() == f"replayed {dlq_topic}/0/0 to {unique_name}\n"
    (message,) = await read_topic(kafka_bootstrap, unique_name)
    assert message.key == b"r-1"
    assert msgspec.json.decode(message.value) == {"recordingId": "r-1", "status": "complete"}
    assert list(message.headers) == [
        ("traceparent", b"t"),
        (dl.REPLAYED_FROM, f"{dlq_topic}/0/0".encode()),
    ]
    committed, end = await committed_and_end(kafka_bootstrap, dlq_topic, group)
    assert committed == end == {0: 4}, "non-matching dead letters are passed over too"

    again = io.StringIO()
    everything = dlq.replay(
        kafka,
        dlq_topic,
        group,
        to=unique_name,
        error_class=None,
        handler=None,
        recording_id=None,
        dry_run=False,
        out=again,
    )
    assert await asyncio.wait_for(everything, 60) == 0
    assert again.getvalue() == ""
    _, source_end = await committed_and_end(kafka_bootstrap, unique_name, group)
    assert source_end == {0: 1}


async def test_dry_run_publishes_and_commits_nothing(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """--dry-run lists what would go where; the source topic and the group's offsets stay put."""
    await create_topic(kafka_bootstrap, unique_name)
    dlq_topic = await _dead_letters(kafka_bootstrap, unique_name)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    group, out = f"{unique_name}.replay", io.StringIO()

    dry = dlq.replay(
        kafka,
        dlq_topic,
        group,
        to=unique_name,
        error_class=None,
        handler=None,
        recording_id="r-2",
        dry_run=True,
        out=out,
    )
    assert await asyncio.wait_for(dry, 60) == 1

    assert out.getvalue() == f"would replay {dlq_topic}/0/1 to {unique_name}\n"
    committed, end = await committed_and_end(kafka_bootstrap, dlq_topic, group)
    assert (committed, end) == ({0: 0}, {0: 4})
    _, source_end = await committed_and_end(kafka_bootstrap, unique_name, group)
    assert source_end == {0: 0}


async def test_empty_topic_finishes_and_a_missing_one_is_an_error(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """Both tools stop at once on an empty topic; naming a topic that does not exist fails."""
    await create_topic(kafka_bootstrap, unique_name, partitions=2)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    out = io.StringIO()

    assert await asyncio.wait_for(dlq.show(kafka, unique_name, None, out), 30) == 0
    empty = dlq.replay(
        kafka,
        unique_name,
        unique_name,
        to=unique_name,
        error_class=None,
        handler=None,
        recording_id=None,
        dry_run=False,
        out=out,
    )
    assert await asyncio.wait_for(empty, 30) == 0
    assert out.getvalue() == ""
    with pytest.raises(ConsumerError, match="does not exist"):
        await dlq.show(kafka, f"{unique_name}.missing", None, out)
    async with admin_client(kafka_bootstrap) as admin:
        assert f"{unique_name}.missing" not in await admin.list_topics(), "looking created it"


async def test_replay_ignores_a_forged_destination_and_refuses_internal_topics(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """A dead letter whose dlq.topic says __consumer_offsets goes to `to`; `to="__*"` is refused."""
    await create_topic(kafka_bootstrap, unique_name)
    dlq_topic = f"{unique_name}.dlq"
    await create_topic(kafka_bootstrap, dlq_topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        forged = [(dl.TOPIC, b"__consumer_offsets"), (dl.ERROR_CLASS, b"PermanentFailure")]
        await producer.send_and_wait(dlq_topic, b'{"recordingId": "r-f"}', headers=forged)
    finally:
        await producer.stop()
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    group = f"{unique_name}.replay"

    def replay(to: str, out: io.StringIO) -> Awaitable[int]:
        return dlq.replay(
            kafka,
            dlq_topic,
            group,
            to=to,
            error_class=None,
            handler=None,
            recording_id=None,
            dry_run=False,
            out=out,
        )

    with pytest.raises(ConsumerError, match="internal Kafka topic"):
        await asyncio.wait_for(replay("__consumer_offsets", io.StringIO()), 60)
    committed, _ = await committed_and_end(kafka_bootstrap, dlq_topic, group)
    assert committed == {0: 0}, "a refused replay consumes nothing"

    out = io.StringIO()
    assert await asyncio.wait_for(replay(unique_name, out), 60) == 1
    assert out.getvalue() == f"replayed {dlq_topic}/0/0 to {unique_name}\n"
    (message,) = await read_topic(kafka_bootstrap, unique_name)
    assert message.value == b'{"recordingId": "r-f"}'
    assert list(message.headers) == [(dl.REPLAYED_FROM, f"{dlq_topic}/0/0".encode())]


async def test_show_escapes_control_characters_from_headers_and_values(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """Terminal escape sequences in a dead letter's headers or recordingId are printed escaped."""
    dlq_topic = f"{unique_name}.dlq"
    await create_topic(kafka_bootstrap, dlq_topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        headers = [
            (dl.HANDLER, b"log\x1b[2J"),
            (dl.ERROR_MESSAGE, "boom \x1b]0;title\x07 \x9b31m".encode()),
            (dl.ERROR_PATH, "$.x\u202e".encode()),
        ]
        value = msgspec.json.encode({"recordingId": "r-\x1b[31m"})
        await producer.send_and_wait(dlq_topic, value, headers=headers)
    finally:
        await producer.stop()
    out = io.StringIO()
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    assert await asyncio.wait_for(dlq.show(kafka, dlq_topic, None, out), 60) == 1
    (line,) = out.getvalue().splitlines()
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw not in line, f"{raw!r} reached the terminal"
    assert "recordingId=r-\\x1b[31m" in line
    assert "handler=log\\x1b[2J" in line
    assert "path=$.x\\u202e" in line
