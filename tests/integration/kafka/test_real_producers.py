"""Events written by librdkafka (confluent-kafka), the client behind most producers: every
codec, transactions and CloudEvents. Real broker; a second client writes, the worker reads."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec
from confluent_kafka import Producer
from structlog.testing import capture_logs

from consumer.engine.worker import Worker
from tests._support.kafka_helpers import (
    Recorder,
    committed_and_end,
    recording_message,
    settings_for,
)

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
PER_CODEC = 40


def librdkafka_send(
    bootstrap: str, topic: str, partition: int, recording_ids: list[str], **config: str
) -> None:
    """Send from librdkafka in batches (linger), with `config` such as ``compression.type``."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, **config})
    for recording_id in recording_ids:
        key, value = recording_message(recording_id)
        producer.produce(topic, value=value, key=key, partition=partition)
    assert producer.flush(60) == 0


async def test_every_codec_is_handled_and_committed_to_the_end(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """One partition per codec, each written by librdkafka: all handled, all committed."""
    await create_topic(kafka_bootstrap, unique_name, len(CODECS))
    for partition, codec in enumerate(CODECS):
        ids = [f"{codec}-{n}" for n in range(PER_CODEC)]
        config = {"compression.type": codec}
        await asyncio.to_thread(
            librdkafka_send, kafka_bootstrap, unique_name, partition, ids, **config
        )
    recorder = Recorder()
    settings = settings_for(kafka_bootstrap, unique_name, unique_name)
    await asyncio.wait_for(Worker(settings, {"log": recorder}).run(until_idle=1.0), 90)

    handled = Counter(str(rid).partition("-")[0] for rid in recorder.recording_ids())
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    table = {codec: (handled[codec], committed[p]) for p, codec in enumerate(CODECS)}
    assert table == dict.fromkeys(CODECS, (PER_CODEC, PER_CODEC)), table
    assert end == dict.fromkeys(range(len(CODECS)), PER_CODEC)


def transactions(bootstrap: str, topic: str) -> None:
    """p0: 10 committed, 5 aborted, 10 committed; p1: only 5 aborted. Each ends in a marker."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": topic})
    producer.init_transactions(60)
    plan = [
        ("commit", [(0, f"ok-a{n}") for n in range(10)]),
        ("abort", [(n % 2, f"aborted-{n}") for n in range(10)]),
        ("commit", [(0, f"ok-b{n}") for n in range(10)]),
    ]
    for outcome, messages in plan:
        producer.begin_transaction()
        for partition, recording_id in messages:
            key, value = recording_message(recording_id)
            producer.produce(topic, value=value, key=key, partition=partition)
        producer.flush(60)
        if outcome == "commit":
            producer.commit_transaction(60)
        else:
            producer.abort_transaction(60)


async def test_aborted_transactions_are_never_handled_and_offsets_pass_markers(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """read_committed (default) handles only committed events and commits past every marker;
    read_uncommitted hands out the aborted ones too."""
    await create_topic(kafka_bootstrap, unique_name, 2)
    await asyncio.to_thread(transactions, kafka_bootstrap, unique_name)
    committed_ids = [f"ok-a{n}" for n in range(10)] + [f"ok-b{n}" for n in range(10)]

    recorder = Recorder()
    settings = settings_for(kafka_bootstrap, unique_name, unique_name)
    assert settings.kafka.isolation_level == "read_committed"
    await asyncio.wait_for(Worker(settings, {"log": recorder}).run(until_idle=1.0), 90)
    assert recorder.recording_ids() == committed_ids
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    # p0: 25 records and 3 markers; p1: 5 aborted records and their marker.
    assert committed == end == {0: 28, 1: 6}

    everything = Recorder()
    group = f"{unique_name}.uncommitted"
    settings = settings_for(
        kafka_bootstrap, unique_name, group, KAFKA__ISOLATION_LEVEL="read_uncommitted"
    )
    await asyncio.wait_for(Worker(settings, {"log": everything}).run(until_idle=1.0), 90)
    assert sorted(map(str, everything.recording_ids())) == sorted(
        [*committed_ids, *(f"aborted-{n}" for n in range(10))]
    )
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, group)
    assert committed == end


def mixed_envelopes(bootstrap: str, topic: str) -> dict[str, str]:
    """Structured, binary and raw events in turn from librdkafka; recordingId -> its mode."""
    producer = Producer({"bootstrap.servers": bootstrap})
    modes = {}
    for n in range(9):
        mode = ("structured", "binary", "raw")[n % 3]
        recording_id = f"{mode}-{n}"
        _, callback = recording_message(recording_id)
        attributes = {
            "specversion": "1.0",
            "id": f"evt-{n}",
            "source": "https://ingress.example.com/bandwidth",
            "type": "com.bandwidth.voice.recording",
            "time": "2026-11-27T10:15:31Z",
        }
        headers: list[tuple[str, str | bytes | None]]
        if mode == "structured":
            value = b'{"data":' + callback + b"," + msgspec.json.encode(attributes)[1:]
            headers = [("content-type", b"application/cloudevents+json; charset=utf-8")]
        elif mode == "binary":
            value = callback
            headers = [(f"ce_{k}", v.encode()) for k, v in attributes.items()]
            headers.append(("content-type", b"application/json"))
        else:
            value, headers = callback, []
        producer.produce(topic, value=value, key=recording_id.encode(), headers=headers)
        modes[recording_id] = mode
    assert producer.flush(60) == 0
    return modes


async def test_cloudevents_structured_binary_and_raw_mixed_under_auto(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """auto: each message's envelope (or none) reaches the handler and the canonical line."""
    await create_topic(kafka_bootstrap, unique_name)
    modes = await asyncio.to_thread(mixed_envelopes, kafka_bootstrap, unique_name)
    recorder = Recorder()
    settings = settings_for(kafka_bootstrap, unique_name, unique_name, EVENTS__ENVELOPE="auto")
    with capture_logs() as logs:
        await asyncio.wait_for(Worker(settings, {"log": recorder}).run(until_idle=1.0), 90)

    assert sorted(map(str, recorder.recording_ids())) == sorted(modes)
    for event, ctx in recorder.seen:
        n = int(str(event.recording_id).rpartition("-")[2])
        if modes[str(event.recording_id)] == "raw":
            assert ctx.envelope is None
        else:
            assert ctx.envelope is not None
            assert (ctx.envelope.id, ctx.envelope.type) == (
                f"evt-{n}",
                "com.bandwidth.voice.recording",
            )
            assert ctx.envelope.source == "https://ingress.example.com/bandwidth"
            assert ctx.envelope.time == datetime(2026, 11, 27, 10, 15, 31, tzinfo=UTC)
    lines = {
        entry["recordingId"]: entry
        for entry in logs
        if entry["event"] == "message" and entry["outcome"] == "handled"
    }
    assert len(lines) == 9
    for recording_id, mode in modes.items():
        number = recording_id.rpartition("-")[2]
        expected = None if mode == "raw" else f"evt-{number}"
        assert lines[recording_id].get("ce_id") == expected
        if expected:
            assert lines[recording_id]["ce_time"] == "2026-11-27T10:15:31+00:00"
            assert lines[recording_id]["ce_source"] == "https://ingress.example.com/bandwidth"
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end == {0: 9}
