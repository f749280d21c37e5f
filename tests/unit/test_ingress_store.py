"""The store's choice between Kafka and the spool, with a stand-in Kafka link and a real spool."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from consumer.ingress.metrics import IngressMetrics
from consumer.ingress.spool import Spool, SpooledCallback
from consumer.ingress.store import Store


class Link:
    """Acknowledges nothing while `acking` is false; records what it was asked to deliver."""

    def __init__(self) -> None:
        self.up = True
        self.acking = False
        self.delivered: list[bytes] = []

    async def deliver(self, entry: SpooledCallback) -> bool:
        if not self.acking:
            self.up = False
            return False
        self.delivered.append(entry.value)
        self.up = True
        return True


class SlowSpool(Spool):
    """A spool whose appends wait for `release`, as a slow fsync would."""

    release: asyncio.Event

    async def append(self, entry: SpooledCallback) -> None:
        await self.release.wait()
        await super().append(entry)


def entry(value: bytes) -> SpooledCallback:
    return SpooledCallback(value=value, key=b"r-1", headers=())


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
