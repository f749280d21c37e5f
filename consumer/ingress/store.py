"""Where a callback is stored before it is answered: Kafka's ack, else the spool; and the task
that forwards the spool to Kafka in arrival order.

While the spool holds anything, new callbacks go behind it, so one recording's events reach the
topic in the order they arrived; the spool empties only through acknowledged forwarding.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import structlog

from consumer.ingress.link import BACKOFF, KafkaLink
from consumer.ingress.metrics import IngressMetrics
from consumer.ingress.spool import Spool, SpooledCallback, SpoolError

FORWARD_BATCH = 500
"""Spooled callbacks produced per round; removed from the spool once all (or a prefix) acked."""


class Store:
    """`put` returns only once the callback is stored; raises SpoolError when it cannot be."""

    def __init__(
        self,
        link: KafkaLink,
        spool: Spool,
        *,
        max_bytes: int,
        metrics: IngressMetrics,
    ) -> None:
        self._link = link
        self._spool = spool
        self._metrics = metrics
        self._max_bytes = max_bytes
        self._wake = asyncio.Event()
        self._appending = 0
        self._stopping = False
        self.refused: str | None = None
        """Why the last append failed (full, unwritable), until one succeeds or room is made."""
        self._log = structlog.get_logger("consumer.ingress")

    def can_store(self) -> bool:
        """Kafka acknowledges, or the spool has room and takes writes."""
        room = self._spool.size_bytes < self._max_bytes and self.refused is None
        return self._link.up or room

    async def put(self, entry: SpooledCallback) -> Literal["kafka", "spool"]:
        # Appends still waiting for their fsync count as spooled: a callback arriving meanwhile
        # must not overtake them on the way to Kafka.
        direct = not self._appending and not len(self._spool) and self._link.up
        if direct and await self._link.deliver(entry):
            self._metrics.answers.produced += 1
            return "kafka"
        self._appending += 1
        try:
            await self._spool.append(entry)
        except SpoolError as exc:
            self.refused = str(exc)
            raise
        finally:
            self._appending -= 1
        self.refused = None
        self._metrics.spooled.inc()
        self._wake.set()
        return "spool"

    async def forward(self) -> None:
        """Forward the spool, oldest first; entries go only after their ack. After `stop`,
        returns once the spool is empty or Kafka stops acknowledging."""
        failures = 0
        while True:
            if not len(self._spool):
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._stopping and not self._link.up:
                return
            await self._link.started.wait()
            batch = self._spool.oldest(FORWARD_BATCH)
            acked = await self._link.deliver_in_order(batch)
            if acked:
                try:
                    await self._spool.remove(acked)
                except SpoolError as exc:  # forwarded again later: a duplicate, not a loss
                    self._log.error("cannot mark spooled callbacks forwarded", error=str(exc))
                self._metrics.answers.produced += acked
                self.refused = None  # room again, or a writable spool: the next append tells
                if not len(self._spool):
                    self._log.info("spool forwarded to Kafka")
            if acked == len(batch):
                failures = 0
            elif not self._stopping:
                failures += 1
                await asyncio.sleep(BACKOFF.delay(failures))

    def stop(self) -> None:
        """`forward` returns once the spool is forwarded, or at once if Kafka does not ack."""
        self._stopping = True
        self._wake.set()
