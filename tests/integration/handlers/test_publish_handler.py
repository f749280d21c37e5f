"""The publish handler: topic templates, payloads, headers, and a real broker at the far end."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumer.devkit.testing import kafka_round_trip, make_event, run_handler
from consumer.errors import PluginError
from consumer.events import RecordingAvailable, decode, encode_event
from consumer.handler_api import ProducerPublish, Record
from consumer.handlers.publish import PublishHandler, PublishOptions

ORIGINAL = (
    b'{ "eventType": "recordingAvailable",\n  "recordingId": "r-7", "status": "complete",\n'
    b'  "accountId": "9900000", "vendorExtra": true }'
)
"""Bytes no encoder would produce: whitespace and an unknown field survive only if forwarded."""


def original() -> RecordingAvailable:
    event = decode(ORIGINAL)
    assert isinstance(event, RecordingAvailable)
    return event


def record(**changes: object) -> Record:
    fields: dict[str, object] = {
        "topic": "in",
        "partition": 0,
        "offset": 5,
        "key": b"r-7",
        "headers": (("trace", b"abc"), ("published-by", b"someone-else")),
        "timestamp": 0,
    }
    return Record(**(fields | changes))  # type: ignore[arg-type]


async def test_republishes_original_bytes_with_key_and_headers() -> None:
    """By default the consumed bytes go on, keyed as before, with a fresh published-by header."""
    handler = PublishHandler(PublishOptions(published_by="worker-1"))
    run = await run_handler(handler, original(), record=record(), value=ORIGINAL)
    assert run.error is None
    (sent,) = run.published
    assert (sent.topic, sent.value, sent.key) == ("recordings.complete", ORIGINAL, b"r-7")
    assert sent.headers == (("trace", b"abc"), ("published-by", b"worker-1"))


async def test_default_signature_is_host_and_pid() -> None:
    """Without published_by, the header says which host and process sent it."""
    run = await run_handler(PublishHandler(), make_event())
    assert run.published[0].headers[-1] == (
        "published-by",
        f"{socket.gethostname()}:{os.getpid()}".encode(),
    )


async def test_normalised_payload() -> None:
    """payload="normalised" sends the parsed event as JSON, without nulls, decoding to the same."""
    event = make_event(tag=None)
    run = await run_handler(PublishHandler(PublishOptions(payload="normalised")), event, value=b"x")
    value = run.published[0].value
    assert value == encode_event(event)
    assert "tag" not in json.loads(value)
    assert decode(value) == event


@pytest.mark.parametrize(
    ("status", "topic"),
    [
        ("complete", "audit.recordingAvailable.9900000.complete"),
        ("Transcoding/v2 ..", "audit.recordingAvailable.9900000.Transcoding_v2___"),
        (None, "audit.recordingAvailable.9900000.none"),
        ("x" * 500, "audit.recordingAvailable.9900000." + "x" * 64),
    ],
    ids=["plain", "unsafe", "missing", "long"],
)
def test_topic_template_sanitises_values(status: str | None, topic: str) -> None:
    """Placeholders are filled with values reduced to topic-safe characters."""
    handler = PublishHandler(PublishOptions(topic="audit.{eventType}.{accountId}.{status}"))
    assert handler.topic_for(make_event(status=status)) == topic


@pytest.mark.parametrize(
    "template",
    [
        "recordings.{callId}",
        "recordings.{status!r}",
        "recordings.{status:>9}",
        "rec/{status}",
        "recordings.{}",
        "recordings.{status",
        "t" * 180 + ".{accountId}.{status}",
    ],
    ids=["unknown", "conversion", "format-spec", "slash", "positional", "unclosed", "too-long"],
)
def test_bad_templates_fail_at_construction(template: str) -> None:
    """Templates that could make an invalid topic name are refused when configured."""
    with pytest.raises(PluginError, match=r"handlers\.publish\.topic"):
        PublishHandler(PublishOptions(topic=template))


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    kafka = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await kafka.start()
    yield kafka
    await kafka.stop()


async def read_one(bootstrap: str, topic: str) -> Any:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        return await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()


async def test_lands_on_per_status_topic_through_a_real_producer(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    producer: AIOKafkaProducer,
) -> None:
    """With a real producer behind ctx.publish, the broker holds the bytes, key and header."""
    await create_topic(kafka_bootstrap, f"{unique_name}.complete")
    handler = PublishHandler(PublishOptions(topic=unique_name + ".{status}", published_by="w-1"))
    publish = ProducerPublish(producer)
    run = await run_handler(handler, original(), record=record(), value=ORIGINAL, publish=publish)
    assert run.error is None
    message = await read_one(kafka_bootstrap, f"{unique_name}.complete")
    assert (message.value, message.key) == (ORIGINAL, b"r-7")
    assert ("published-by", b"w-1") in list(message.headers)


async def test_worker_republishes_to_per_status_topic(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """Through the Worker, a consumed event reaches its status topic byte for byte, key kept."""
    for status in ("complete", "error"):
        await create_topic(kafka_bootstrap, f"{unique_name}.{status}")
    error = msgspec.json.encode(
        {"eventType": "recordingAvailable", "recordingId": "r-9", "status": "error"}
    )
    handler = PublishHandler(PublishOptions(topic=unique_name + ".{status}", published_by="w-2"))
    async with asyncio.timeout(60):
        await kafka_round_trip(
            kafka_bootstrap,
            {"publish": handler},
            [(b"r-7", ORIGINAL), (b"r-9", error)],
            topic=unique_name,
        )
        complete = await read_one(kafka_bootstrap, f"{unique_name}.complete")
        failed = await read_one(kafka_bootstrap, f"{unique_name}.error")
    assert (complete.value, complete.key) == (ORIGINAL, b"r-7")
    assert (failed.value, failed.key) == (error, b"r-9")
    assert ("published-by", b"w-2") in list(complete.headers)
