"""The loops bench/throughput.py times: bare aiokafka in this process, the worker and FastStream
each in a process of their own, watched through Kafka.

Every run reads the whole topic with a group of its own. A run's clock starts at its first
fetched (bare) or handled (worker, FastStream) event and stops when the group's committed
offsets reach the end of every partition: in this process right after the last commit returns,
for another process when a poll of the group's offsets (every 20 ms) first sees them there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import structlog
from _common import connect, fresh, kafka_settings
from aiokafka import AIOKafkaConsumer
from noop_handler import EVENTS, TIMES

from consumer.events import EventDecoder, RecordingEvent
from consumer.kafka.topics import admin_client

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MAX_RECORDS = 2000
POLL_SECONDS = 0.02
START_TIMEOUT = 120.0
"""Seconds a process may take to start and commit the whole topic before the run fails."""


@dataclass(frozen=True)
class Run:
    """Seconds until all was committed; for a process, also until its last event was handled."""

    seconds: float
    handled: float | None = None


@dataclass(frozen=True)
class Backlog:
    """The topic every run reads, and where each of its partitions ends."""

    server: str
    topic: str
    count: int
    ends: dict[int, int]


def decode_and_drive() -> Callable[[Any], None]:
    """Per record, what any engine must do and nothing more: a msgspec decode, the lane key,
    and a no-op handler's coroutine run to completion directly, with no task (the floor the
    issue's minimal batch loop measured)."""
    decode = EventDecoder().decode

    async def handle(event: Any, lane: tuple[int, Any]) -> None:
        return None

    def per_record(record: Any) -> None:
        event = decode(record.value)
        assert isinstance(event, RecordingEvent)  # the backlog holds recordings only
        lane = (record.partition, record.key or event.ordering_key)
        with contextlib.suppress(StopIteration):
            handle(event, lane).send(None)

    return per_record


def decode_and_log() -> Callable[[Any], None]:
    """Per record: a msgspec decode and one JSON line with the worker's outcome-line fields,
    through structlog as `configure_logging` set it up."""
    decode = EventDecoder().decode
    log = structlog.get_logger("bench.bare").bind()

    def per_record(record: Any) -> None:
        event = decode(record.value)
        assert isinstance(event, RecordingEvent)  # the backlog holds recordings only
        log.info(
            "message",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            **event.summary(),
            outcome="handled",
            duration_ms=0.0,
            handlers=("noop",),
            attempts=1,
        )

    return per_record


async def bare(
    backlog: Backlog,
    per_record: Callable[[Any], None] | None = None,
    *,
    commit_per_batch: bool = True,
) -> Run:
    """Seconds from the first fetched batch to the last commit of a bare `getmany` loop."""
    consumer = AIOKafkaConsumer(
        backlog.topic,
        **connect(backlog.server),
        group_id=fresh("bare"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        seen = 0
        first = 0.0
        while seen < backlog.count:
            batch = await consumer.getmany(timeout_ms=200, max_records=MAX_RECORDS)
            if not batch:
                continue
            if not seen:
                first = time.perf_counter()
            for records in batch.values():
                if per_record is not None:
                    for record in records:
                        per_record(record)
                seen += len(records)
            if commit_per_batch:
                await consumer.commit()
        if not commit_per_batch:
            await consumer.commit()
        return Run(time.perf_counter() - first)
    finally:
        await consumer.stop()


def worker_config(backlog: Backlog, group: str, level: str) -> str:
    """A settings file: the worker's defaults, routing every event to the no-op plugin."""
    return f"""
[kafka]
bootstrap_servers = "{backlog.server}"
topic = "{backlog.topic}"
group_id = "{group}"

[logging]
format = "json"
level = "{level}"

[routes]
default = ["noop"]

[plugins.paths]
noop = "noop_handler:NoopHandler"
"""


async def worker(backlog: Backlog, level: str) -> Run:
    """The worker (``python -m consumer run``) with the no-op plugin, at `level`."""
    group = fresh("worker")
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        config = Path(tmp) / "consumer.toml"
        config.write_text(worker_config(backlog, group, level))
        command = [sys.executable, "-m", "consumer", "run", "--config", str(config)]
        return await _time_process(backlog, group, command, Path(tmp))


async def faststream(backlog: Backlog, logging: str) -> Run:
    """FastStream's subscriber (bench/faststream_app.py), its `logging` "none" or "default"."""
    group = fresh("faststream")
    app = str(BENCH / "faststream_app.py")
    command = [sys.executable, app, backlog.server, backlog.topic, group, logging]
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        return await _time_process(backlog, group, command, Path(tmp))


async def _time_process(backlog: Backlog, group: str, command: list[str], tmp: Path) -> Run:
    """Run `command` until `group` has committed the whole topic: from its first handled event
    (noted in $BENCH_TIMES, as bench/noop_handler.py does) until the commit was seen."""
    errors = tmp / "stderr"
    env = os.environ | {
        TIMES: str(tmp),
        EVENTS: str(backlog.count),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")])),
    }
    with errors.open("wb") as stderr:
        # Its stdout (a line per event when logged) goes where a terminal would not slow it.
        process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        committed_at = await _committed_end(backlog, group, process)
        first, last = [await _noted(tmp / name) for name in ("first", "last")]
        return Run(committed_at - first, last - first)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        sys.stderr.write(errors.read_text(errors="replace")[-4000:])
        raise
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _noted(path: Path) -> float:
    """The time a handler noted in `path`. FastStream commits what it fetched, so its last
    event may still be running when the commit is seen: wait a little for it."""
    async with asyncio.timeout(10):
        while (noted := _read_time(path)) is None:  # noqa: ASYNC110 (another process writes it)
            await asyncio.sleep(POLL_SECONDS)
    return noted


def _read_time(path: Path) -> float | None:
    return float(path.read_text()) if path.exists() else None


async def _committed_end(
    backlog: Backlog, group: str, process: asyncio.subprocess.Process
) -> float:
    """The wall-clock time at which `group`'s committed offsets were first seen at the ends."""
    deadline = time.monotonic() + START_TIMEOUT + backlog.count / 1000
    async with admin_client(kafka_settings(backlog.server)) as admin:
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            now = time.time()
            positions = {tp.partition: meta.offset for tp, meta in committed.items()}
            if all(positions.get(p, -1) >= end for p, end in backlog.ends.items()):
                return now
            if process.returncode is not None:
                raise RuntimeError(f"the process exited ({process.returncode}) before committing")
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {group} committed only {positions}")
            await asyncio.sleep(POLL_SECONDS)


def machine() -> str:
    """What the figures were measured on: CPU model, cores, platform, the clients' versions,
    the load at the start."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{n:.2f}" for n in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}, aiokafka {version('aiokafka')}, "
        f"FastStream {version('faststream')}; load average at start {load}"
    )
