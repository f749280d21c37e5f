"""Helpers shared by the broker-backed tests: settings, offsets, recording handlers."""

from __future__ import annotations

import asyncio
import io
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.cli.samples import recording_event
from consumer.engine.offsets import Batch, OffsetTracker
from consumer.events import RecordingEvent
from consumer.handler_api import Context
from consumer.kafka.security import checked
from consumer.kafka.topics import admin_client, partitions
from consumer.observability.printable import print_escaped
from consumer.settings.config import KafkaSettings, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
APPEND_HANDLER = "tests._support.slow_handlers:AppendToFile"
"""The drills' handler: appends each event it handles to a journal file."""


def settings_for(bootstrap: str, topic: str, group: str, **overrides: str) -> Settings:
    """The project's defaults pointed at a test's own topic and group, with env-style overrides."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RECORDING_CONSUMER__KAFKA__TOPIC": topic,
        "RECORDING_CONSUMER__KAFKA__GROUP_ID": group,
        "RECORDING_CONSUMER__ENGINE__COMMIT_INTERVAL": "0.2",
    }
    env.update({f"RECORDING_CONSUMER__{k.upper()}": v for k, v in overrides.items()})
    return checked(load_settings(environ=env), env)


async def topic_partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    """The partitions of `topic`, in order; the topic must exist."""
    async with admin_client(KafkaSettings(bootstrap_servers=bootstrap)) as admin:
        found = sorted(await partitions(admin, topic))
    assert found, f"topic {topic} has no partitions"
    return found


async def committed_and_end(
    bootstrap: str, topic: str, group: str
) -> tuple[dict[int, int], dict[int, int]]:
    """(committed offset, end offset) per partition for `group` on `topic`."""
    partitions = await topic_partitions(bootstrap, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        committed = {tp.partition: (await consumer.committed(tp)) or 0 for tp in partitions}
        return committed, {tp.partition: ends[tp] for tp in partitions}
    finally:
        await consumer.stop()


async def wait_for(condition: Callable[[], bool], seconds: float = 30.0, what: str = "it") -> None:
    """Poll `condition` until it holds, failing after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Recorder:
    """A handler that remembers every event it was given, with its context."""

    seen: list[tuple[RecordingEvent, Context]] = field(default_factory=list)

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        self.seen.append((event, ctx))

    def recording_ids(self) -> list[Any]:
        return [event.recording_id for event, _ in self.seen]


def worker_process(
    bootstrap: str,
    topic: str,
    handled: Path,
    until_idle: float | None = None,
    *,
    # Any: callers spread dicts of settings (str) into **env, which mypy would match to it.
    preexec_fn: Any = None,
    **env: str,
) -> subprocess.Popen[bytes]:
    """`recording-consumer run` in a child process, every status routed to AppendToFile.

    `env` keys name settings (``ENGINE__ORDERING``) or, when they start with ``TEST_``, the
    handler's own knobs (see tests/_support/slow_handlers.py).
    """
    settings = {k: v for k, v in env.items() if not k.startswith("TEST_")}
    full_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RECORDING_CONSUMER__KAFKA__TOPIC": topic,
        "RECORDING_CONSUMER__KAFKA__GROUP_ID": topic,
        "RECORDING_CONSUMER__PLUGINS__PATHS__APPEND": APPEND_HANDLER,
        "RECORDING_CONSUMER__ROUTES__DEFAULT": '["append"]',
        "RECORDING_CONSUMER__LOGGING__FORMAT": "json",
        "TEST_HANDLED_FILE": str(handled),
        **{f"RECORDING_CONSUMER__{k}": v for k, v in settings.items()},
        **{k: v for k, v in env.items() if k.startswith("TEST_")},
    }
    idle = ["--until-idle", str(until_idle)] if until_idle is not None else []
    config = REPO / "tests" / "_support" / "minimal.toml"
    # Output goes to a file, not a pipe: nobody reads a pipe while the worker runs, and a
    # full one would block it.
    with handled.with_name(handled.name + ".log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "consumer", "run", "--config", str(config), *idle],
            env=full_env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )


async def exit_status(process: subprocess.Popen[bytes], seconds: float = 60) -> int:
    """Wait for a worker process to exit; its output is in ``<handled>.log``."""
    return await asyncio.to_thread(process.wait, seconds)


def handled_lines(path: Path) -> list[tuple[int, int]]:
    """(partition, offset) of each event AppendToFile wrote to `path`."""
    return [(partition, offset) for partition, offset, _ in handled_records(path)]


def handled_records(path: Path) -> list[tuple[int, int, str]]:
    """(partition, offset, recordingId) of each event AppendToFile wrote to `path`, in order."""
    if not path.exists():
        return []
    rows = (line.split(":") for line in path.read_text().splitlines())
    return [(int(partition), int(offset), rid) for partition, offset, rid in rows]


async def read_topic(bootstrap: str, topic: str, seconds: float = 30.0) -> list[Any]:
    """Every record in `topic` now, in offset order per partition, read without a group."""
    partitions = await topic_partitions(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        async with asyncio.timeout(seconds):
            while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
                batch = await consumer.getmany(timeout_ms=200)
                records += [r for rs in batch.values() for r in rs]
        return records
    finally:
        await consumer.stop()


def recording_message(recording_id: str, status: str = "complete") -> tuple[bytes, bytes]:
    """(key, value) of a fully populated recordingAvailable event, keyed by its recordingId."""
    value = msgspec.json.encode(recording_event(recording_id, f"c-{recording_id}", status))
    return recording_id.encode(), value


# Record batch v2: the batch length follows the 8-byte base offset; the attributes' low 3 bits
# are the codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
BATCH_LENGTH_AT, BATCH_ATTRIBUTES_AT = 8, 21


def record_batches(segment: bytes) -> list[tuple[int, int]]:
    """(start, end) of every record batch in the bytes of a broker's log segment."""
    found, at = [], 0
    while at + 12 <= len(segment):
        (length,) = struct.unpack_from(">i", segment, at + BATCH_LENGTH_AT)
        found.append((at, at + 12 + length))
        at += 12 + length
    return found


def segment_codecs(segment: Path) -> list[int]:
    """The compression codec id of every batch in a log segment file, in order."""
    data = segment.read_bytes()
    return [data[start + BATCH_ATTRIBUTES_AT + 1] & 0x07 for start, _ in record_batches(data)]


class FinishedOffsets:
    """The committer's part the scheduler uses (`Finishes`): finished offsets go into a real
    tracker; `finished` is set at every one, `drained` once nothing is in flight."""

    def __init__(self) -> None:
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self.finished = asyncio.Event()
        self.drained = asyncio.Event()

    def finish(self, batch: Batch, index: int) -> None:
        self.tracker.finish(batch, index)
        self.finished.set()
        if not self.tracker.in_flight():
            self.drained.set()


def printer(out: io.StringIO) -> Callable[[str], None]:
    """The command line's `say` for the dead-letter commands: each line escaped, into `out`."""
    return partial(print_escaped, file=out)
