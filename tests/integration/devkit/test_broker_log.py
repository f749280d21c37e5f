"""What is in the broker's own log segments: the codecs the project writes, and batches the
client cannot read, which stop the worker with where and why, and exit 3.

The bad batches are made honestly: bytes changed in the log segment of a broker of this
module's own, which the broker serves as they are and the client then fails to read.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.record._crc32c import crc as crc32c
from confluent_kafka import Consumer

from consumer.cli.main import main
from consumer.cli.samples import MALFORMED
from consumer.devkit.broker import LocalBroker, free_port
from consumer.engine.worker import Worker
from tests._support.kafka_helpers import (
    BATCH_ATTRIBUTES_AT,
    Recorder,
    committed_and_end,
    exit_status,
    handled_lines,
    record_batches,
    recording_message,
    segment_codecs,
    settings_for,
    worker_process,
)

# Record batch v2: where the CRC sits and where the bytes it covers (attributes on) begin.
CRC_AT = 17
LZ4, ZSTD = 3, 4
"""Codec ids in a record batch's attributes."""


@pytest.fixture(scope="module")
def log_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker of this module's own, whose log segments the tests read and change."""
    with LocalBroker(tmp_path_factory.mktemp("kafka"), port=free_port()) as broker:
        yield broker


def segment(broker: LocalBroker, topic: str) -> Path:
    """The first log segment of partition 0 of `topic`."""
    return broker.data_dir / f"{topic}-0" / f"{0:020d}.log"


def corrupt(segment_file: Path, marker: bytes, how: str) -> None:
    """Change the batch holding `marker`: a flipped byte (bad CRC) or an unknown codec id."""
    data = bytearray(segment_file.read_bytes())
    where = data.index(marker)
    start, end = next((s, e) for s, e in record_batches(bytes(data)) if s <= where < e)
    if how == "crc":
        data[where] ^= 0x20
    else:
        # Codec 5 does not exist; the CRC is made right, so only the codec is wrong.
        data[start + BATCH_ATTRIBUTES_AT + 1] = (
            data[start + BATCH_ATTRIBUTES_AT + 1] & ~0x07
        ) | 0x05
        struct.pack_into(
            ">I", data, start + CRC_AT, crc32c(bytes(data[start + BATCH_ATTRIBUTES_AT : end]))
        )
    with segment_file.open("r+b") as f:  # in place: the running broker serves these bytes
        f.seek(start)
        f.write(data[start:end])


async def send_each(bootstrap: str, topic: str, recording_ids: list[str]) -> None:
    """One batch per message."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for recording_id in recording_ids:
            key, value = recording_message(recording_id)
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def run_until_idle(bootstrap: str, topic: str, handled: Path) -> tuple[int, str]:
    """Run a worker process until idle; its exit status and its output (this run's alone)."""
    log = handled.with_name(handled.name + ".log")
    earlier = log.stat().st_size if log.exists() else 0
    process = worker_process(bootstrap, topic, handled, until_idle=1.0)
    status = await exit_status(process, 120)
    with log.open("rb") as output:
        output.seek(earlier)
        return status, output.read().decode()


async def test_unreadable_batches_stop_the_worker_with_partition_offset_and_cause(
    log_broker: LocalBroker,
    unique_name: str,
    tmp_path: Path,
    create_topic: Callable[..., Awaitable[None]],
) -> None:
    """A bad CRC and an unknown codec each: one error line, exit 3, nothing committed past."""
    bootstrap = log_broker.bootstrap
    for how, cause in (("crc", "Invalid CRC"), ("codec", "Unknown compression codec 0x05")):
        topic = f"{unique_name}-{how}"
        await create_topic(bootstrap, topic)
        handled = tmp_path / f"{how}.handled"
        await send_each(bootstrap, topic, ["good-0", "good-1"])
        status, _ = await run_until_idle(bootstrap, topic, handled)
        assert status == 0
        assert handled_lines(handled) == [(0, 0), (0, 1)]

        await send_each(bootstrap, topic, [f"bad-{how}", "good-3"])
        corrupt(segment(log_broker, topic), f"bad-{how}".encode(), how)
        status, log = await run_until_idle(bootstrap, topic, handled)

        assert status == 3, log
        errors = [
            line
            for line in (msgspec.json.decode(text) for text in log.splitlines() if text[:1] == "{")
            if line["level"] == "error"
        ]
        assert len(errors) == 1, log
        assert errors[0]["event"] == "unreadable batch, stopping"
        assert (errors[0]["partition"], errors[0]["offset"]) == (0, 2)
        assert cause in errors[0]["error"]
        assert "Traceback" not in log
        assert handled_lines(handled) == [(0, 0), (0, 1)]
        committed, end = await committed_and_end(bootstrap, topic, topic)
        assert (committed, end) == ({0: 2}, {0: 4})


def librdkafka_read(bootstrap: str, topic: str, count: int) -> list[bytes]:
    """The values of the first `count` messages of `topic`, read by librdkafka."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}.librdkafka",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    try:
        for _ in range(600):
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                values.append(message.value() or b"")
            if len(values) >= count:
                break
    finally:
        consumer.close()
    return values


async def test_what_the_project_produces_is_compressed_and_readable_by_librdkafka(
    log_broker: LocalBroker,
    unique_name: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`produce --compression lz4` and zstd dead letters: the broker's log holds those codecs,
    and librdkafka reads the batches back whole."""
    bootstrap = log_broker.bootstrap
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    argv = ["produce", "--topic", unique_name, "--partitions", "1", "--compression", "lz4"]
    assert await asyncio.to_thread(main, argv) == 0
    assert f"produced 7 messages to {unique_name}" in capsys.readouterr().err
    values = await asyncio.to_thread(librdkafka_read, bootstrap, unique_name, 7)
    assert len(values) == 7
    assert all(value.startswith(b"{") for value in values)

    # The sample set ends in an undecodable message: the worker dead-letters it with zstd.
    settings = settings_for(bootstrap, unique_name, unique_name, KAFKA__COMPRESSION_TYPE="zstd")
    await asyncio.wait_for(Worker(settings, {"log": Recorder()}).run(until_idle=1.0), 90)
    dead = await asyncio.to_thread(librdkafka_read, bootstrap, f"{unique_name}.dlq", 1)
    assert dead == [MALFORMED]

    assert set(segment_codecs(segment(log_broker, unique_name))) == {LZ4}
    assert set(segment_codecs(segment(log_broker, f"{unique_name}.dlq"))) == {ZSTD}
