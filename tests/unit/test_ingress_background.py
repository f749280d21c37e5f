"""The ingress's background tasks under failure: the forwarder (with a stand-in Kafka link and a
real spool on a disk that can be made to refuse writes) and the link's connecting loop."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from typing import Any

import pytest
import structlog

from consumer.errors import KafkaConnectError
from consumer.ingress.link import KafkaLink
from consumer.ingress.metrics import IngressMetrics
from consumer.ingress.spool import Spool
from consumer.ingress.store import Store
from consumer.settings.config import KafkaSettings
from tests._support.ingress_fakes import Disk, Link, entry
from tests._support.kafka_helpers import wait_for


def store_of(link: Any, spool: Spool) -> tuple[Store, IngressMetrics]:
    metrics = IngressMetrics(lambda: 0.0, lambda: 0.0, lambda: 1.0)
    return Store(link, spool, max_bytes=2**20, metrics=metrics), metrics


async def spooled(directory: Path, *values: bytes) -> Spool:
    spool = Spool.open(directory, 2**20)
    for value in values:
        await spool.append(entry(value))
    return spool


async def test_a_marker_that_cannot_be_written_sends_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka acks the spool while its marker cannot be written (read-only volume): each entry is
    sent and counted once, not again and again; the marker is tried again with backoff and one
    error line says so; once the volume takes writes, the marker is written and a restart finds
    the spool empty. Until then a restart would forward them again (duplicates, not a loss)."""
    link: Any = Link()
    link.acking = True
    link.started.set()
    disk = Disk(monkeypatch)
    spool = await spooled(tmp_path / "spool", b"A", b"B", b"C")
    store, metrics = store_of(link, spool)
    disk.broken = True
    with structlog.testing.capture_logs() as logs:
        forwarding = asyncio.create_task(store.forward())
        await wait_for(lambda: disk.markers >= 2, 20, "the marker tried again")
        assert (link.delivered, len(spool), metrics.answers.produced) == ([b"A", b"B", b"C"], 0, 3)
        disk.broken = False
        await wait_for(lambda: not spool.unmarked, 20, "the marker written")
        store.stop()
        await forwarding
    errors = [line for line in logs if line["log_level"] == "error"]
    assert len(errors) == 1
    assert "Read-only file system" in errors[0]["error"]
    assert link.delivered == [b"A", b"B", b"C"]
    spool.close()
    reopened = Spool.open(tmp_path / "spool", 2**20)
    assert len(reopened) == 0
    reopened.close()


async def test_stop_returns_at_once_when_kafka_never_connected(tmp_path: Path) -> None:
    """Kafka never connected and callbacks spooled: after `stop`, the forwarder returns at once
    rather than waiting for a connection until the caller's grace runs out; the spool keeps
    them."""
    link: Any = Link()
    link.up = False
    spool = await spooled(tmp_path / "spool", b"A")
    store, _ = store_of(link, spool)
    forwarding = asyncio.create_task(store.forward())
    await asyncio.sleep(0)  # one turn of the loop: the forwarder waits for Kafka now
    store.stop()
    async with asyncio.timeout(2):
        await forwarding
    assert len(spool) == 1
    spool.close()


async def test_a_spool_that_cannot_be_read_is_retried_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading the spool fails (an I/O error, then a record changed on disk): the forwarder
    logs it once, waits and tries again instead of ending (which took the whole ingress down);
    nothing is sent altered or lost, and once the reads succeed everything goes, in order."""
    link: Any = Link()
    link.acking = True
    link.started.set()
    spool = await spooled(tmp_path / "spool", b"A", b"B")
    store, _ = store_of(link, spool)
    failures = [OSError(errno.EIO, "Input/output error"), b"changed"]
    pread = os.pread

    def failing_pread(fd: int, size: int, offset: int) -> bytes:
        if not failures:
            return pread(fd, size, offset)
        failure = failures.pop(0)
        if isinstance(failure, OSError):
            raise failure
        return b"\0" * size  # what a changed record reads as: its checksum fails

    monkeypatch.setattr("os.pread", failing_pread)
    with structlog.testing.capture_logs() as logs:
        forwarding = asyncio.create_task(store.forward())
        await wait_for(lambda: link.delivered == [b"A", b"B"], 20, "the spool forwarded")
        store.stop()
        await forwarding
    events = [(line["log_level"], line["event"]) for line in logs]
    assert events[0] == ("error", "cannot read the spool: forwarding paused")
    assert events.count(events[0]) == 1
    assert ("info", "spool read") in events
    spool.close()


async def test_the_link_retries_an_unexpected_error_from_starting_the_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Starting the producer fails with something other than a connection error (anything the
    client may raise): the link logs it and tries again with backoff, as for Kafka away, rather
    than ending the task (which took the whole ingress down with a traceback)."""
    attempts: list[Any] = []
    hold = asyncio.Event()

    async def start(producer: Any, kafka: KafkaSettings) -> None:
        attempts.append(producer)
        if len(attempts) == 1:
            raise RuntimeError("unexpected")
        if len(attempts) == 2:
            await producer.stop()  # as connection.start does before raising this
            raise KafkaConnectError("cannot connect", retryable=True)
        await hold.wait()

    monkeypatch.setattr("consumer.kafka.connection.start", start)
    link = KafkaLink(KafkaSettings(bootstrap_servers="127.0.0.1:1"), 1024, 1.0)
    with structlog.testing.capture_logs() as logs:
        connecting = asyncio.create_task(link.connect())
        await wait_for(lambda: len(attempts) == 3 or connecting.done(), 20, "a third attempt")
        assert not connecting.done()
        connecting.cancel()
        await attempts[-1].stop()
    events = [(line["log_level"], line["event"]) for line in logs]
    assert events[:2] == [
        ("error", "cannot start the Kafka producer; spooling callbacks"),
        ("warning", "Kafka not reachable; spooling callbacks"),
    ]
    assert not link.started.is_set()
