"""Shared by the engine benchmarks: the broker, ~1 KB events, a fast backlog, timed runs.

Every timed run starts its clock at the first fetched message and stops it when the last
message is committed, so group joins, topic creation and leaving the group count for no side.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consumer.cli.samples import recording_event
from consumer.devkit.broker import bootstrap_servers
from consumer.engine.worker import Worker
from consumer.events import RecordingEvent
from consumer.handler_api import Context
from consumer.kafka.security import checked, client_options
from consumer.kafka.topics import admin_client, end_offsets
from consumer.observability.observers import Observers
from consumer.observability.server import endpoint
from consumer.settings.config import (
    EngineSettings,
    KafkaSettings,
    LoggingSettings,
    Settings,
    load_settings,
)

Message = tuple[bytes, bytes]


def bootstrap() -> str:
    """``$KAFKA_BOOTSTRAP_SERVERS``, else the long-lived local broker (started if needed)."""
    return bootstrap_servers()


def kafka_settings(server: str, **fields: Any) -> KafkaSettings:
    """`server` with the environment's [kafka] settings (security included), and `fields`."""
    kafka = checked(load_settings(environ=os.environ), os.environ).kafka
    return msgspec.structs.replace(kafka, bootstrap_servers=server, **fields)


def connect(server: str) -> dict[str, Any]:
    """aiokafka client arguments for `server`, secured as the environment says."""
    return client_options(kafka_settings(server))


def event_value(recording_id: str, status: str) -> bytes:
    """A fully populated recordingAvailable of about 1 KB, as Bandwidth sends them."""
    event = recording_event(recording_id, f"c-{recording_id[2:]}", status)
    event |= {
        "parentCallId": f"c-{uuid.UUID(int=zlib.crc32(recording_id.encode()))}",
        "enqueuedTime": "2026-11-27T10:15:29.001Z",
        "tag": "campaign=spring-renewals;agent=4711;queue=billing-escalations;priority=normal",
        "transferCallerId": "+15557778888",
        "transferTo": "+15559990000",
    }
    return msgspec.json.encode(event)


def messages(count: int, keys: int | None = None) -> list[Message]:
    """`count` (key, value) pairs; every event its own recording, or `keys` recordings in turn."""
    statuses = ("processing", "complete")
    out = []
    for n in range(count):
        r = n if keys is None else n % keys
        recording = f"r-{r:08d}-{uuid.UUID(int=r)}"
        out.append((recording.encode(), event_value(recording, statuses[n % 2])))
    return out


async def publish_backlog(
    server: str, topic: str, partitions: int, data: Sequence[Message]
) -> None:
    """Create `topic` and fill it, keys hashed to partitions, in batches of up to ~900 KB."""
    async with admin_client(kafka_settings(server)) as admin:
        await admin.create_topics([NewTopic(topic, partitions, replication_factor=1)])
    producer = AIOKafkaProducer(
        **connect(server), acks=1, max_batch_size=900_000, max_request_size=1_000_000
    )
    await producer.start()
    try:
        by_partition: list[list[Message]] = [[] for _ in range(partitions)]
        for key, value in data:
            by_partition[zlib.crc32(key) % partitions].append((key, value))
        acks = []
        for partition, pending in enumerate(by_partition):
            batch = producer.create_batch()
            for key, value in pending:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    acks.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            acks.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


def fresh(prefix: str) -> str:
    return f"bench.{prefix}.{uuid.uuid4().hex[:8]}"


@dataclass
class Timing:
    """One run: when the first message arrived, the last was handled, the last was committed."""

    count: int
    started: float
    first: float = 0.0
    last: float = 0.0
    committed: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.committed - self.first

    @property
    def rate(self) -> float:
        return self.count / self.seconds


class Probe:
    """A handler that notes the first and last event it saw; `then` runs per event."""

    def __init__(self, total: int, then: Callable[[RecordingEvent, Context], Any] | None = None):
        self.total = total
        self.seen = 0
        self.first = 0.0
        self.last = 0.0
        self.done = asyncio.Event()
        self._then = then

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        if self.seen == 0:
            self.first = time.perf_counter()
        if self._then is not None:
            await self._then(event, ctx)
        self.seen += 1
        if self.seen == self.total:
            self.last = time.perf_counter()
            self.done.set()


def worker_settings(server: str, topic: str, level: str, **engine: Any) -> Settings:
    return Settings(
        kafka=kafka_settings(server, topic=topic, group_id=fresh("worker")),
        engine=EngineSettings(**engine),
        logging=LoggingSettings(format="json", level=level),  # type: ignore[arg-type]
        routes={"default": ["probe"]},
    )


async def time_worker(settings: Settings, probe: Probe, *, serve: bool = False) -> Timing:
    """Run the project's Worker until the probe saw every event and every offset is committed;
    with `serve`, its HTTP endpoint too (on ``observability.listen``)."""
    observers = Observers(settings)
    worker = Worker(settings, {"probe": probe}, observers)
    if not serve:
        return await _time_run(worker, probe)
    async with endpoint(worker, observers):
        return await _time_run(worker, probe)


async def _time_run(worker: Worker, probe: Probe) -> Timing:
    timing = Timing(probe.total, time.perf_counter())
    ends = await end_offsets(worker.settings.kafka, worker.settings.kafka.topic)
    run = asyncio.create_task(worker.run())
    committed = asyncio.create_task(worker.wait_committed(ends))
    await asyncio.wait({run, committed}, return_when=asyncio.FIRST_COMPLETED)
    if run.done():
        run.result()
        raise RuntimeError(f"worker returned after {probe.seen} of {probe.total} events")
    timing.committed = time.perf_counter()
    worker.stop()
    await run
    timing.first, timing.last = probe.first, probe.last
    return timing


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[None]:
    """Per-event JSON lines go to /dev/null: writing them costs, a terminal would not be fair."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"
