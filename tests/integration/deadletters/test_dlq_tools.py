"""`dlq show` and `dlq replay` against the real broker, on dead letters the publisher wrote."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from consumer.deadletters import commands as dlq
from consumer.deadletters import headers as dl
from consumer.errors import ConsumerError
from consumer.kafka.topics import admin_client
from consumer.settings.config import KafkaSettings
from tests._support.deadletters import dead_letters
from tests._support.kafka_helpers import REPO, committed_and_end, printer, read_topic


async def test_show_lists_dead_letters_with_their_reasons(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """One line per dead letter: origin, recordingId, handler, error, path, attempts, time."""
    await create_topic(kafka_bootstrap, unique_name)
    dlq_topic = await dead_letters(kafka_bootstrap, unique_name)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    out = io.StringIO()

    assert await asyncio.wait_for(dlq.show(kafka, dlq_topic, None, printer(out)), 60) == 4

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
    assert await asyncio.wait_for(dlq.show(kafka, dlq_topic, 2, printer(limited)), 60) == 2
    assert limited.getvalue().splitlines() == lines[:2]


async def test_replay_republishes_only_matches_and_never_twice(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """Filters select r-1 alone; it returns with its key, value, headers; a rerun adds nothing."""
    await create_topic(kafka_bootstrap, unique_name)
    dlq_topic = await dead_letters(kafka_bootstrap, unique_name)
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
            say=printer(out),
        ),
        60,
    )

    assert replayed == (1, 0)
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
        say=printer(again),
    )
    assert await asyncio.wait_for(everything, 60) == (0, 0)
    assert again.getvalue() == ""
    _, source_end = await committed_and_end(kafka_bootstrap, unique_name, group)
    assert source_end == {0: 1}


async def test_dry_run_publishes_and_commits_nothing(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """--dry-run lists what would go where; the source topic and the group's offsets stay put."""
    await create_topic(kafka_bootstrap, unique_name)
    dlq_topic = await dead_letters(kafka_bootstrap, unique_name)
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
        say=printer(out),
    )
    assert await asyncio.wait_for(dry, 60) == (1, 0)

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

    assert await asyncio.wait_for(dlq.show(kafka, unique_name, None, printer(out)), 30) == 0
    empty = dlq.replay(
        kafka,
        unique_name,
        unique_name,
        to=unique_name,
        error_class=None,
        handler=None,
        recording_id=None,
        dry_run=False,
        say=printer(out),
    )
    assert await asyncio.wait_for(empty, 30) == (0, 0)
    assert out.getvalue() == ""
    with pytest.raises(ConsumerError, match="does not exist"):
        await dlq.show(kafka, f"{unique_name}.missing", None, printer(out))
    async with admin_client(KafkaSettings(bootstrap_servers=kafka_bootstrap)) as admin:
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

    def replay(to: str, out: io.StringIO) -> Awaitable[dlq.ReplayCounts]:
        return dlq.replay(
            kafka,
            dlq_topic,
            group,
            to=to,
            error_class=None,
            handler=None,
            recording_id=None,
            dry_run=False,
            say=printer(out),
        )

    with pytest.raises(ConsumerError, match="internal Kafka topic"):
        await asyncio.wait_for(replay("__consumer_offsets", io.StringIO()), 60)
    committed, _ = await committed_and_end(kafka_bootstrap, dlq_topic, group)
    assert committed == {0: 0}, "a refused replay consumes nothing"

    out = io.StringIO()
    assert await asyncio.wait_for(replay(unique_name, out), 60) == (1, 0)
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
    assert await asyncio.wait_for(dlq.show(kafka, dlq_topic, None, printer(out)), 60) == 1
    (line,) = out.getvalue().splitlines()
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw not in line, f"{raw!r} reached the terminal"
    assert "recordingId=r-\\x1b[31m" in line
    assert "handler=log\\x1b[2J" in line
    assert "path=$.x\\u202e" in line


SOURCE_TIMESTAMP = 1_700_000_000_000
ORIGINAL = b'{"recordingId": "r-src", "status": "complete"}'


def reference(topic: str, **changes: bytes) -> list[tuple[str, bytes | None]]:
    """The headers of a reference record for offset 0 of partition 0 of `topic`, as the
    publisher writes them, with `changes` (by header name)."""
    headers: dict[str, bytes | None] = {
        dl.TOPIC: topic.encode(),
        dl.PARTITION: b"0",
        dl.OFFSET: b"0",
        dl.TIMESTAMP: str(SOURCE_TIMESTAMP).encode(),
        dl.ERROR_CLASS: b"DecodeError",
        dl.VALUE_TOO_LARGE: str(len(ORIGINAL)).encode(),
    }
    return list((headers | changes).items())


async def test_replay_passes_over_forged_dead_letters_and_replays_the_rest(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """Forged reference records (a partition that does not exist, a number that is not one, a
    refetched value whose size or timestamp differs) and a null dlq.* header get one escaped
    line each, at once; the good dead letters around them are replayed, everything is
    committed, a rerun finds nothing, and `dlq show` lists all of them without crashing."""
    source, dlq_topic = unique_name, f"{unique_name}.dlq"
    await create_topic(kafka_bootstrap, source)
    await create_topic(kafka_bootstrap, dlq_topic)
    topic = source.encode()
    forged: list[list[tuple[str, bytes | None]]] = [
        reference(source, **{dl.PARTITION: b"999"}),
        [(dl.ERROR_CLASS, None), (dl.TOPIC, topic)],
        reference(source, **{dl.VALUE_TOO_LARGE: str(len(ORIGINAL) + 1).encode()}),
        reference(source, **{dl.TIMESTAMP: str(SOURCE_TIMESTAMP + 1).encode()}),
        reference(source, **{dl.PARTITION: "0\x1b[2J\u202e".encode()}),
        reference(source),  # genuine
        [(dl.TOPIC, topic), (dl.ERROR_CLASS, b"PermanentFailure")],  # genuine, value kept
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(source, ORIGINAL, key=b"r-src", timestamp_ms=SOURCE_TIMESTAMP)
        for n, headers in enumerate(forged):
            value = b"" if any(k == dl.VALUE_TOO_LARGE for k, _ in headers) else b'{"n": %d}' % n
            await producer.send_and_wait(dlq_topic, value, key=b"k%d" % n, headers=headers)
    finally:
        await producer.stop()
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=source)
    group = f"{unique_name}.replay"

    def replay(out: io.StringIO) -> Awaitable[dlq.ReplayCounts]:
        return dlq.replay(
            kafka,
            dlq_topic,
            group,
            to=source,
            error_class=None,
            handler=None,
            recording_id=None,
            dry_run=False,
            say=printer(out),
        )

    out = io.StringIO()
    assert await asyncio.wait_for(replay(out), 20) == (2, 5), out.getvalue()
    assert out.getvalue().splitlines() == [
        f"cannot replay {dlq_topic}/0/0: parts of it were left out of its dead letter and "
        f"{source}/999/0 names a partition {source} does not have; skipped",
        f"cannot replay {dlq_topic}/0/1: header dlq.error.class is null; skipped",
        f"cannot replay {dlq_topic}/0/2: {source}/0/0 holds {len(ORIGINAL)} bytes, "
        f"the dead letter says {len(ORIGINAL) + 1}; skipped",
        f"cannot replay {dlq_topic}/0/3: {source}/0/0 was written at {SOURCE_TIMESTAMP}, "
        f"the dead letter says {SOURCE_TIMESTAMP + 1}; skipped",
        f"cannot replay {dlq_topic}/0/4: header dlq.partition is not a number: "
        "'0\\x1b[2J\\u202e'; skipped",
        f"replayed {dlq_topic}/0/5 to {source}",
        f"replayed {dlq_topic}/0/6 to {source}",
    ]
    _, first, second = await read_topic(kafka_bootstrap, source)
    assert (first.key, first.value) == (b"k5", ORIGINAL)
    assert (second.key, second.value) == (b"k6", b'{"n": 6}')
    committed, end = await committed_and_end(kafka_bootstrap, dlq_topic, group)
    assert committed == end == {0: len(forged)}

    again = io.StringIO()
    assert await asyncio.wait_for(replay(again), 20) == (0, 0)
    assert again.getvalue() == ""

    shown = io.StringIO()
    assert await asyncio.wait_for(dlq.show(kafka, dlq_topic, None, printer(shown)), 20) == len(
        forged
    )
    lines = shown.getvalue().splitlines()
    assert 'malformed="header dlq.error.class is null"' in lines[1]
    assert "\x1b" not in shown.getvalue()
    assert "\u202e" not in shown.getvalue()
    assert "malformed=" not in lines[5] + lines[6]


def test_cli_replay_exit_status_says_some_were_skipped(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """`dlq replay` with a forged reference to partition 999 and a null dlq.* header exits 4
    within seconds: one line each on stdout, the count on stderr, no traceback."""

    async def forge() -> None:
        await create_topic(kafka_bootstrap, unique_name)
        await create_topic(kafka_bootstrap, f"{unique_name}.dlq")
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            forged: list[list[tuple[str, bytes | None]]] = [
                reference(unique_name, **{dl.PARTITION: b"999"}),
                [(dl.HANDLER, None)],
                [(dl.ERROR_CLASS, b"PermanentFailure")],
            ]
            for headers in forged:
                await producer.send_and_wait(f"{unique_name}.dlq", b"{}", headers=headers)
        finally:
            await producer.stop()

    asyncio.run(forge())
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RECORDING_CONSUMER__KAFKA__TOPIC": unique_name,
        "RECORDING_CONSUMER__KAFKA__GROUP_ID": unique_name,
    }
    command = [sys.executable, "-m", "consumer", "dlq", "replay", "--dry-run"]
    result = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    assert [line.split(": ")[0] for line in result.stdout.splitlines()] == [
        f"cannot replay {unique_name}.dlq/0/0",
        f"cannot replay {unique_name}.dlq/0/1",
        f"would replay {unique_name}.dlq/0/2 to {unique_name}",
    ]
    assert result.stderr.splitlines()[-1] == (
        "would replay 1 dead letters; skipped 2 that cannot be replayed"
    )
