"""Messages too large for aiokafka's defaults: dead-lettered whole where the topics allow it,
as reference records where they do not, and replayed from their source offset."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import RecordsToDelete

from consumer.deadletters import commands as dlq
from consumer.deadletters import headers as dl
from consumer.deadletters.headers import Failure
from consumer.deadletters.publisher import HEADER_ROOM, DeadLetterPublisher, request_size
from consumer.errors import DecodeError
from consumer.handler_api import Record
from consumer.kafka.topics import admin_client
from consumer.settings.config import DeadLetterSettings, KafkaSettings
from tests._support.kafka_helpers import printer, read_topic

SOURCE_LIMIT = 3 * 1024 * 1024
BIG = b'{"eventType": "recordingAvailable", "pad": "' + b"x" * 2_000_000 + b'"'
FAILURE = Failure.from_exception(DecodeError("not valid JSON"), handler=None)


@pytest.fixture
async def big_source(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> AsyncIterator[tuple[Record, AIOKafkaProducer]]:
    """A topic allowing 3 MB holding one 2 MB message at offset 0, and a producer sized for it."""
    await create_topic(
        kafka_bootstrap, unique_name, configs={"max.message.bytes": str(SOURCE_LIMIT)}
    )
    size = await request_size(
        KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=unique_name), None
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=size
    )
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            unique_name, BIG, key=b"r-big", headers=[("traceparent", b"t")]
        )
        headers = (("traceparent", b"t"),)
        yield Record(unique_name, 0, sent.offset, b"r-big", headers, sent.timestamp), producer
    finally:
        await producer.stop()


async def test_dead_letters_follow_the_source_topics_limit(
    kafka_bootstrap: str, unique_name: str, big_source: tuple[Record, AIOKafkaProducer]
) -> None:
    """The request size and the created dead-letter topic follow the source's max.message.bytes,
    so a 2 MB message is dead-lettered whole."""
    record, producer = big_source
    size = await request_size(
        KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=unique_name), None
    )
    assert size == SOURCE_LIMIT + HEADER_ROOM
    assert (
        await request_size(
            KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=unique_name), 5_000_000
        )
        == 5_000_000
    )
    dlq_topic = f"{unique_name}.dlq"
    publisher = DeadLetterPublisher(
        producer,
        KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=unique_name),
        dlq_topic,
        "g",
        DeadLetterSettings(),
        source_topic=unique_name,
        max_message_bytes=size,
    )
    await publisher.ensure_topic()

    await asyncio.wait_for(publisher.publish(record, BIG, FAILURE), 60)

    (message,) = await read_topic(kafka_bootstrap, dlq_topic)
    assert message.value == BIG
    assert dl.VALUE_TOO_LARGE not in dict(message.headers)


async def test_too_large_for_the_dead_letter_topic_becomes_a_reference_record_and_replays(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    big_source: tuple[Record, AIOKafkaProducer],
) -> None:
    """A dead-letter topic with the broker's 1 MB limit gets key and headers, an empty value;
    show says so, replay refetches the value, and says when the source no longer has it."""
    record, producer = big_source
    dlq_topic = f"{unique_name}.dlq"
    await create_topic(kafka_bootstrap, dlq_topic)  # made by an operator, at the default limit
    publisher = DeadLetterPublisher(
        producer,
        KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=unique_name),
        dlq_topic,
        "g",
        DeadLetterSettings(),
    )

    await asyncio.wait_for(publisher.publish(record, BIG, FAILURE), 60)

    (reference,) = await read_topic(kafka_bootstrap, dlq_topic)
    assert (reference.key, reference.value) == (b"r-big", b"")
    headers = dict(reference.headers)
    assert headers[dl.VALUE_TOO_LARGE] == str(len(BIG)).encode()
    assert headers[dl.TOPIC] == unique_name.encode()
    assert (headers[dl.PARTITION], headers[dl.OFFSET]) == (b"0", b"0")
    assert headers[dl.ERROR_CLASS] == b"DecodeError"
    assert headers["traceparent"] == b"t"

    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=unique_name)
    shown = io.StringIO()
    assert await asyncio.wait_for(dlq.show(kafka, dlq_topic, None, printer(shown)), 60) == 1
    assert f"value=too-large:{len(BIG)}-bytes-not-stored" in shown.getvalue()

    def replay(group: str, out: io.StringIO) -> Awaitable[dlq.ReplayCounts]:
        return dlq.replay(
            kafka,
            dlq_topic,
            group,
            error_class=None,
            handler=None,
            recording_id=None,
            to=unique_name,
            dry_run=False,
            say=printer(out),
        )

    out = io.StringIO()
    assert await asyncio.wait_for(replay(f"{unique_name}.a", out), 60) == (1, 0)
    assert out.getvalue() == f"replayed {dlq_topic}/0/0 to {unique_name}\n"
    _, replayed = await read_topic(kafka_bootstrap, unique_name)
    assert (replayed.key, replayed.value) == (b"r-big", BIG)
    assert dict(replayed.headers)[dl.REPLAYED_FROM] == f"{dlq_topic}/0/0".encode()

    async with admin_client(KafkaSettings(bootstrap_servers=kafka_bootstrap)) as admin:
        await admin.delete_records({TopicPartition(unique_name, 0): RecordsToDelete(1)})
    gone = io.StringIO()
    assert await asyncio.wait_for(replay(f"{unique_name}.b", gone), 60) == (0, 1)
    assert gone.getvalue() == (
        f"cannot replay {dlq_topic}/0/0: parts of it were left out of its dead letter and "
        f"{unique_name}/0/0 is no longer retained; skipped\n"
    )


async def test_headers_left_out_of_a_dead_letter_are_refetched_on_replay(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """A record whose headers are too large for the dead-letter topic is dead-lettered without
    them (dlq.headers_dropped); replay republishes it with its original headers and key,
    refetched from the source offset, not with the dead letter's bare remains."""
    await create_topic(
        kafka_bootstrap, unique_name, configs={"max.message.bytes": str(SOURCE_LIMIT)}
    )
    dlq_topic = f"{unique_name}.dlq"
    await create_topic(kafka_bootstrap, dlq_topic)  # the broker's 1 MB default
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=unique_name)
    big = ("x-big", b"h" * 1_500_000)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        acks="all",
        max_request_size=await request_size(kafka, None),
    )
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            unique_name, b"not json", key=b"k-1", headers=[big, ("traceparent", b"t")]
        )
        record = Record(
            unique_name, 0, sent.offset, b"k-1", (big, ("traceparent", b"t")), sent.timestamp
        )
        publisher = DeadLetterPublisher(producer, kafka, dlq_topic, "g", DeadLetterSettings())
        await asyncio.wait_for(publisher.publish(record, b"not json", FAILURE), 60)
    finally:
        await producer.stop()
    (dead,) = await read_topic(kafka_bootstrap, dlq_topic)
    assert dl.HEADERS_DROPPED in dict(dead.headers)
    assert "x-big" not in dict(dead.headers)

    out = io.StringIO()
    counts = await asyncio.wait_for(
        dlq.replay(
            kafka,
            dlq_topic,
            f"{unique_name}.replay",
            error_class=None,
            handler=None,
            recording_id=None,
            to=unique_name,
            dry_run=False,
            say=printer(out),
        ),
        60,
    )
    assert counts == (1, 0), out.getvalue()
    _, replayed = await read_topic(kafka_bootstrap, unique_name)
    headers = dict(replayed.headers)
    assert (replayed.key, replayed.value) == (b"k-1", b"not json")
    assert (headers["x-big"], headers["traceparent"]) == (big[1], b"t")
    assert headers[dl.REPLAYED_FROM] == f"{dlq_topic}/0/0".encode()
