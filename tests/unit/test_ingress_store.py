"""The store's choice between Kafka and the spool, and when it can store (readiness), with a
stand-in Kafka link and a real spool."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from consumer.ingress.metrics import IngressMetrics
from consumer.ingress.spool import Spool, SpooledCallback, SpoolUnwritable
from consumer.ingress.store import Store
from tests._support.ingress_fakes import Disk, Link, entry
from tests._support.kafka_helpers import wait_for


class SlowSpool(Spool):
    """A spool whose appends wait for `release`, as a slow fsync would."""

    release: asyncio.Event

    async def append(self, entry: SpooledCallback) -> None:
        await self.release.wait()
        await super().append(entry)


async def test_a_callback_does_not_overtake_one_still_being_spooled(tmp_path: Path) -> None:
    """A is refused by Kafka and is being written to the spool when Kafka acknowledges again:
    B, same recording, arriving meanwhile goes to the spool behind A, not straight to Kafka."""
    link: Any = Link()
    spool = SlowSpool.open(tmp_path / "spool", 2**20)
    spool.release = asyncio.Event()
    metrics = IngressMetrics(lambda: 0.0, lambda: 0.0, lambda: 1.0)
    store = Store(link, spool, max_bytes=2**20, metrics=metrics)

    first = asyncio.create_task(store.put(entry(b"A")))
    await asyncio.sleep(0)  # A: refused by Kafka, now waiting on its fsync
    link.up = link.acking = True  # Kafka is back before A's append returned
    second = asyncio.create_task(store.put(entry(b"B")))
    await asyncio.sleep(0)
    spool.release.set()

    assert list(await asyncio.gather(first, second)) == ["spool", "spool"]
    assert link.delivered == []
    assert [e.value for e in spool.oldest(10)] == [b"A", b"B"]
    spool.close()


def store_of(link: Any, spool: Spool) -> Store:
    metrics = IngressMetrics(lambda: 0.0, lambda: 0.0, lambda: 1.0)
    return Store(link, spool, max_bytes=2**20, metrics=metrics)


async def test_kafka_is_tried_when_the_spool_refuses_and_holds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka went down and came back unnoticed (no produce since) while the spool's volume turned
    read-only: a callback is taken by Kafka (200) rather than refused, once the spool refuses it
    and holds nothing it would overtake. With something spooled ahead of it, it is refused."""
    link: Any = Link()
    link.up, link.acking = False, True
    disk = Disk(monkeypatch)
    spool = Spool.open(tmp_path / "spool", 2**20)
    store = store_of(link, spool)
    disk.broken = True

    assert await store.put(entry(b"A")) == "kafka"
    assert (link.delivered, store.refused, store.can_store()) == ([b"A"], None, True)

    disk.broken = False
    link.up = False
    assert await store.put(entry(b"B")) == "spool"
    disk.broken = True
    with pytest.raises(SpoolUnwritable):
        await store.put(entry(b"C"))
    assert link.delivered == [b"A"]
    spool.close()


async def test_readiness_comes_back_without_a_callback_once_the_spool_takes_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka away and the spool refusing: the store cannot store (unready, so no callback comes
    to find out otherwise). Once the volume takes writes again, the forwarder's check of it makes
    the store ready again, with no callback."""
    link: Any = Link()
    link.up = False
    disk = Disk(monkeypatch)
    spool = Spool.open(tmp_path / "spool", 2**20)
    store = store_of(link, spool)
    forwarding = asyncio.create_task(store.forward())
    disk.broken = True
    with pytest.raises(SpoolUnwritable):
        await store.put(entry(b"A"))
    assert not store.can_store()

    await wait_for(lambda: disk.markers >= 1, 10, "the spool checked")
    assert not store.can_store()
    disk.broken = False
    await wait_for(store.can_store, 10, "the store ready again")
    assert store.refused is None
    store.stop()
    await forwarding
    spool.close()
