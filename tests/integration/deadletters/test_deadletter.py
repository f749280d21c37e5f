"""Dead letters: the headers that explain them, and publishing that never gives up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from structlog.testing import capture_logs

from consumer.deadletters import headers as dl
from consumer.deadletters.headers import Failure, dead_letter_headers
from consumer.deadletters.publisher import DeadLetterPublisher
from consumer.errors import DecodeError, PermanentFailure
from consumer.handler_api import Record
from consumer.settings.config import DeadLetterSettings, KafkaSettings
from tests._support.deadletters import FIRST, LAST
from tests._support.kafka_helpers import read_topic, topic_partitions, wait_for

RECORD = Record(
    topic="bandwidth.recordings",
    partition=2,
    offset=1234,
    key=b"r-1",
    headers=(("traceparent", b"00-abc-def-01"), ("dlq.handler", b"forged")),
    timestamp=1_795_000_000_123,
)


def test_headers_for_a_handler_failure() -> None:
    """Original headers first (less incoming dlq.* ones), then ours, handler named, no path."""
    failure = Failure.from_exception(
        PermanentFailure("404 Not Found"),
        handler="download",
        attempts=5,
        first_failure=FIRST,
        last_failure=LAST,
    )
    assert dead_letter_headers(RECORD, "recording-consumer", failure, max_bytes=1000) == [
        ("traceparent", b"00-abc-def-01"),
        (dl.TOPIC, b"bandwidth.recordings"),
        (dl.PARTITION, b"2"),
        (dl.OFFSET, b"1234"),
        (dl.TIMESTAMP, b"1795000000123"),
        (dl.GROUP, b"recording-consumer"),
        (dl.HANDLER, b"download"),
        (dl.ERROR_CLASS, b"PermanentFailure"),
        (dl.ERROR_MESSAGE, b"404 Not Found"),
        (dl.ATTEMPTS, b"5"),
        (dl.FIRST_FAILURE, b"2026-11-18T11:06:40.250Z"),
        (dl.LAST_FAILURE, b"2026-11-18T11:06:52.500Z"),
    ]


def test_headers_for_a_decode_failure() -> None:
    """A decode error names no handler, carries its reason and its JSON path."""
    failure = Failure.from_exception(
        DecodeError("Expected `int`, got `str`", "$.channels"),
        handler=None,
        first_failure=FIRST,
        last_failure=FIRST,
    )
    headers = dict(dead_letter_headers(RECORD, "g", failure, max_bytes=1000))
    assert dl.HANDLER not in headers
    assert headers[dl.ERROR_CLASS] == b"DecodeError"
    assert headers[dl.ERROR_MESSAGE] == b"Expected `int`, got `str`"
    assert headers[dl.ERROR_PATH] == b"$.channels"
    assert headers[dl.ATTEMPTS] == b"1"
    assert headers[dl.FIRST_FAILURE] == headers[dl.LAST_FAILURE] == b"2026-11-18T11:06:40.250Z"


@pytest.mark.parametrize(
    ("message", "max_bytes", "expected"),
    [
        ("abcé", 4, "abc"),  # é is two bytes: cutting inside it drops it whole
        ("abcé", 5, "abcé"),
        ("a€€", 6, "a€"),  # € is three bytes
        ("short", 1000, "short"),
    ],
)
def test_error_message_is_truncated_on_a_character_boundary(
    message: str, max_bytes: int, expected: str
) -> None:
    """The error message header fits in max_bytes and is always valid UTF-8."""
    failure = Failure("h", "ValueError", message, None, 1, FIRST, FIRST)
    headers = dict(dl.dlq_headers(RECORD, "g", failure, max_bytes=max_bytes))
    assert headers[dl.ERROR_MESSAGE].decode() == expected


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A started acks=all producer, as the worker has."""
    started = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await started.start()
    yield started
    await started.stop()


async def test_publish_creates_the_topic_and_the_dead_letter_round_trips(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    producer: AIOKafkaProducer,
) -> None:
    """ensure_topic creates the missing topic like the source's; key, value, headers come back."""
    await create_topic(kafka_bootstrap, unique_name, partitions=3)
    dlq_topic = f"{unique_name}.dlq"
    publisher = DeadLetterPublisher(
        producer,
        KafkaSettings(bootstrap_servers=kafka_bootstrap),
        dlq_topic,
        "the-group",
        DeadLetterSettings(error_max_bytes=10),
        source_topic=unique_name,
    )
    await publisher.ensure_topic()
    record = Record(unique_name, 1, 7, b"r-1", (("traceparent", b"t-1"),), 1_795_000_000_123)
    failure = Failure(
        "download", "PermanentFailure", "404 Not Found at the URL", None, 3, FIRST, LAST
    )

    await asyncio.wait_for(publisher.publish(record, b'{"recordingId": "r-1"}', failure), 30)

    (message,) = await read_topic(kafka_bootstrap, dlq_topic)
    assert (message.key, message.value) == (b"r-1", b'{"recordingId": "r-1"}')
    assert list(message.headers) == [
        ("traceparent", b"t-1"),
        (dl.TOPIC, unique_name.encode()),
        (dl.PARTITION, b"1"),
        (dl.OFFSET, b"7"),
        (dl.TIMESTAMP, b"1795000000123"),
        (dl.GROUP, b"the-group"),
        (dl.HANDLER, b"download"),
        (dl.ERROR_CLASS, b"PermanentFailure"),
        (dl.ERROR_MESSAGE, b"404 Not Fo"),
        (dl.ATTEMPTS, b"3"),
        (dl.FIRST_FAILURE, b"2026-11-18T11:06:40.250Z"),
        (dl.LAST_FAILURE, b"2026-11-18T11:06:52.500Z"),
    ]
    assert len(await topic_partitions(kafka_bootstrap, dlq_topic)) == 3


async def test_publish_retries_until_the_topic_accepts_the_dead_letter(
    kafka_bootstrap: str, unique_name: str, producer: AIOKafkaProducer
) -> None:
    """With on_unwritable = "stall", while the broker rejects even a bare reference, publish
    keeps retrying; once fixed, the dead letter lands once, whole.

    The topic is created with max.message.bytes=1 so every produce fails (MessageSizeTooLarge) on
    a real broker, then its config is altered to a normal size while publish is retrying.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        tiny = NewTopic(unique_name, 1, 1, topic_configs={"max.message.bytes": "1"})
        await admin.create_topics([tiny])
        failure = Failure("h", "RuntimeError", "boom", None, 5, FIRST, LAST)
        with capture_logs() as logs:
            publisher = DeadLetterPublisher(
                producer,
                KafkaSettings(bootstrap_servers=kafka_bootstrap),
                unique_name,
                "g",
                DeadLetterSettings(on_unwritable="stall"),
            )
            publishing = asyncio.create_task(publisher.publish(RECORD, b"value", failure))

            def failed() -> int:
                return sum(e["event"] == "dead-letter publish failed" for e in logs)

            await wait_for(lambda: failed() >= 2 or publishing.done(), what="two failed attempts")
            assert not publishing.done()
            assert await read_topic(kafka_bootstrap, unique_name) == []
            normal = {"max.message.bytes": "1048588"}
            await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, unique_name, normal)]
            )
            await asyncio.wait_for(publishing, 60)
    finally:
        await admin.close()
    failures = [e for e in logs if e["event"] == "dead-letter publish failed"]
    assert all(e["log_level"] == "error" and "MessageSizeTooLarge" in e["error"] for e in failures)
    assert all(e["retriable"] is False for e in failures), "said to be non-retriable"
    assert not any(e["event"].startswith("dead-lettered as a reference") for e in logs)
    assert failures[0]["offset"] == RECORD.offset
    (message,) = await read_topic(kafka_bootstrap, unique_name)
    assert (message.key, message.value) == (RECORD.key, b"value")


async def test_ensure_topic_logs_and_returns_when_the_broker_is_unreachable(
    producer: AIOKafkaProducer,
) -> None:
    """A topic that cannot be created is an error in the log, not an exception."""
    publisher = DeadLetterPublisher(
        producer, KafkaSettings(bootstrap_servers="127.0.0.1:1"), "x.dlq", "g", DeadLetterSettings()
    )
    with capture_logs() as logs:
        await asyncio.wait_for(publisher.ensure_topic(), 30)
    (entry,) = [e for e in logs if e["event"] == "cannot create dead-letter topic"]
    assert entry["log_level"] == "error"
    assert "KafkaConnectError" in entry["error"]  # the one-line reason of connection.start
    assert "connection refused" in entry["error"]


async def test_what_not_even_a_bare_reference_fits_is_logged_and_skipped_by_default(
    kafka_bootstrap: str,
    unique_name: str,
    producer: AIOKafkaProducer,
    create_topic: Callable[..., Awaitable[None]],
) -> None:
    """With the default on_unwritable = "skip", a topic that takes nothing (max.message.bytes=1)
    gets one error naming the source topic, partition and offset, and publish returns."""
    await create_topic(kafka_bootstrap, unique_name, 1, configs={"max.message.bytes": "1"})
    failure = Failure("h", "RuntimeError", "boom", None, 5, FIRST, LAST)
    publisher = DeadLetterPublisher(
        producer,
        KafkaSettings(bootstrap_servers=kafka_bootstrap),
        unique_name,
        "g",
        DeadLetterSettings(),
    )
    with capture_logs() as logs:
        await asyncio.wait_for(publisher.publish(RECORD, b"value", failure), 60)
    (skipped,) = [e for e in logs if e["event"] == "dead letter unwritable, skipped"]
    assert skipped["log_level"] == "error"
    assert (skipped["topic"], skipped["partition"], skipped["offset"]) == (
        RECORD.topic,
        RECORD.partition,
        RECORD.offset,
    )
    assert "MessageSizeTooLarge" in skipped["error"]
    assert not any(e["event"] == "dead-letter publish failed" for e in logs)
    assert await read_topic(kafka_bootstrap, unique_name) == []


async def test_a_large_key_value_and_headers_end_as_a_bare_reference(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """Key, value and headers each too large together for a topic at the broker's 1 MB limit:
    the dead letter leaves all three out, keeps the dlq.* headers and gives each size."""
    await create_topic(kafka_bootstrap, unique_name, 1)
    key, value, header = b"k" * 600_000, b"v" * 700_000, b"h" * 600_000
    record = Record("src", 3, 42, key, (("x-big", header),), 1)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        publisher = DeadLetterPublisher(
            producer,
            KafkaSettings(bootstrap_servers=kafka_bootstrap),
            unique_name,
            "g",
            DeadLetterSettings(),
        )
        with capture_logs() as logs:
            failure = Failure.from_exception(DecodeError("x"), handler=None)
            await asyncio.wait_for(publisher.publish(record, value, failure), 60)
    finally:
        await producer.stop()
    (bare,) = await read_topic(kafka_bootstrap, unique_name)
    assert (bare.key, bare.value) == (None, b"")
    headers = dict(bare.headers)
    assert "x-big" not in headers
    assert headers[dl.VALUE_TOO_LARGE] == b"700000"
    assert headers[dl.HEADERS_DROPPED] == str(len("x-big") + 600_000).encode()
    assert headers[dl.KEY_DROPPED] == b"600000"
    assert (headers[dl.TOPIC], headers[dl.OFFSET]) == (b"src", b"42")
    (line,) = [e for e in logs if e["event"] == "dead-lettered as a bare reference record"]
    assert line["key_bytes"] == 600_000
