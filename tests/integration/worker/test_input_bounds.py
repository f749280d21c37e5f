"""Memory a producer cannot grow: distinct huge field values through the real worker process."""

from __future__ import annotations

import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from consumer.cli.samples import recording_event
from consumer.devkit.broker import free_port
from consumer.observability.logs import Repeats
from tests._support.kafka_helpers import (
    committed_and_end,
    exit_status,
    handled_lines,
    wait_for,
    worker_process,
)

HUGE = 200_000
"""Characters in each hostile status: large enough that keeping them shows in RSS."""
HOSTILE = 2_000
CONTROL = 1_000
GROWTH_LIMIT_MB = 40
"""The worker kept every distinct status before: 42 to 460 MB for these 2,000. Folded, it grows
by 1 to 4 MB past the control (measured on the shared 2-core test machine, load 12 to 18)."""


def rss_mb(pid: int) -> float:
    """The process's resident set size now, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def huge_events(count: int, field: str) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of events whose `field` is distinct and `HUGE` characters long."""
    for n in range(count):
        event = recording_event(f"r-{field}-{n}", f"c-{field}-{n}", "complete")
        event[field] = f"{n:06d}" + "x" * HUGE
        yield f"r-{field}-{n}".encode(), msgspec.json.encode(event)


async def send(bootstrap: str, topic: str, messages: Iterator[tuple[bytes, bytes]]) -> None:
    """Produce `messages`, a hundred in flight at most, so this process stays small too."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        pending = []
        for key, value in messages:
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 100:
                for future in pending:
                    await future
                pending.clear()
        for future in pending:
            await future
    finally:
        await producer.stop()


async def test_distinct_huge_statuses_do_not_grow_the_worker(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """After a control of 1,000 events with 200 KB tags, 2,000 events with distinct 200 KB
    statuses grow the worker process's RSS by less than 40 MB; every one is handled and
    committed, and /metrics and the run summary count them under `other`, with no label or
    line carrying the hostile text."""
    await create_topic(kafka_bootstrap, unique_name, partitions=2)
    handled, port = tmp_path / "handled", free_port()
    worker = worker_process(
        kafka_bootstrap,
        unique_name,
        handled,
        until_idle=10,
        LOGGING__LEVEL='"warning"',
        OBSERVABILITY__LISTEN=f'"127.0.0.1:{port}"',
    )
    log = handled.with_name("handled.log")
    try:
        # The control: as many bytes in a field nothing counts by, so fetch buffers and the
        # allocator's slack for 200 KB values are in `before`.
        await send(kafka_bootstrap, unique_name, huge_events(CONTROL, "tag"))
        await wait_for(lambda: len(handled_lines(handled)) == CONTROL, 300, "the control events")
        before = rss_mb(worker.pid)

        await send(kafka_bootstrap, unique_name, huge_events(HOSTILE, "status"))
        total = CONTROL + HOSTILE
        await wait_for(lambda: len(handled_lines(handled)) == total, 300, "the hostile events")
        after = rss_mb(worker.pid)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            metrics = (await client.get("/metrics")).text
    except BaseException:
        worker.kill()
        raise
    assert await exit_status(worker, 120) == 0, log.read_text()[-5_000:]

    assert after - before < GROWTH_LIMIT_MB, f"RSS grew from {before:.0f} to {after:.0f} MB"
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end
    assert sum(end.values()) == total
    messages = {
        (sample.labels["outcome"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "recording_consumer_messages"
        for sample in family.samples
        if sample.name == "recording_consumer_messages_total"
    }
    assert messages == {("handled", "complete"): CONTROL, ("handled", "other"): HOSTILE}
    assert max(len(line) for line in metrics.splitlines()) < 1_000
    summary = log.read_text().split("Routed (status -> handler: events):")[1].splitlines()
    assert f"  complete     -> append: {CONTROL}" in summary
    assert f"  other        -> append: {HOSTILE}" in summary
    assert not any("xxxx" in line for line in summary)


def test_repeated_warnings_about_huge_values_keep_a_small_table() -> None:
    """The log's repeat filter remembers 1,000 distinct warnings carrying 200 KB values in
    well under a megabyte: long lines are kept by their digest; a repeat is still held back."""
    repeats = Repeats()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for n in range(1_000):
            line = {"event": "message", "level": "warning", "eventType": f"{n}" + "y" * HUGE}
            repeats(None, "warning", line)
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert grown < 1_000_000, f"{grown} bytes kept"
    again = {"event": "message", "level": "warning", "eventType": "7" + "y" * HUGE}
    with pytest.raises(structlog.DropEvent):
        repeats(None, "warning", again)
