"""Record batches the client cannot read stop the worker with where and why, and exit 3.

The bad batches are made honestly: bytes changed in the broker's own log segment (a private
broker), which the broker serves as they are and the client then fails to read.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.record._crc32c import crc as crc32c

from consumer.devkafka import LocalBroker
from tests.support import (
    BATCH_ATTRIBUTES_AT,
    committed_and_end,
    exit_status,
    handled_lines,
    record_batches,
    recording_message,
    worker_process,
)

# Record batch v2: where the CRC sits and where the bytes it covers (attributes on) begin.
CRC_AT = 17


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
    process = worker_process(bootstrap, topic, handled, until_idle=1.0)
    status = await exit_status(process, 120)
    return status, handled.with_name(handled.name + ".log").read_text()


async def test_unreadable_batches_stop_the_worker_with_partition_offset_and_cause(
    private_broker: LocalBroker,
    unique_name: str,
    tmp_path: Path,
    create_topic: Callable[..., Awaitable[None]],
) -> None:
    """A bad CRC and an unknown codec each: one error line, exit 3, nothing committed past."""
    bootstrap = private_broker.bootstrap
    for how, cause in (("crc", "Invalid CRC"), ("codec", "Unknown compression codec 0x05")):
        topic = f"{unique_name}-{how}"
        await create_topic(bootstrap, topic)
        handled = tmp_path / f"{how}.handled"
        await send_each(bootstrap, topic, ["good-0", "good-1"])
        status, _ = await run_until_idle(bootstrap, topic, handled)
        assert status == 0
        assert handled_lines(handled) == [(0, 0), (0, 1)]

        await send_each(bootstrap, topic, [f"bad-{how}", "good-3"])
        segment = private_broker.data_dir / f"{topic}-0" / f"{0:020d}.log"
        corrupt(segment, f"bad-{how}".encode(), how)
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
