"""Where a callback is stored before it is answered: Kafka's ack, else the spool; and the task
that forwards the spool to Kafka in arrival order.

While the spool holds anything, new callbacks go behind it, so one recording's events reach the
topic in the order they arrived; the spool empties only through acknowledged forwarding.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

import structlog

from consumer.ingress.link import BACKOFF, KafkaLink
from consumer.ingress.metrics import IngressMetrics
from consumer.ingress.spool import Spool, SpooledCallback, SpoolError
from consumer.ingress.streak import Streak

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
        self._stopped = asyncio.Event()
        self._appending = 0
        self.refused: str | None = None
        """Why the last append failed (full, unwritable), until one succeeds or room is made."""
        self._reading = Streak(BACKOFF, "cannot read the spool: forwarding paused", "spool read")
        self._writing = Streak(
            BACKOFF,
            "cannot write to the spool (forwarded callbacks stay on disk, sent again after a "
            "restart; callbacks Kafka does not take are answered 503)",
            "spool writable again",
        )
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
            # Nothing spooled ahead of it: Kafka may be back unnoticed, so it gets the callback
            # rather than a 503 (still counted as appending meanwhile, so nothing overtakes it).
            if not direct and not len(self._spool) and await self._link.deliver(entry):
                self._metrics.answers.produced += 1
                return "kafka"
            self.refused = str(exc)
            self._wake.set()  # the forwarder checks the spool from now on
            raise
        finally:
            self._appending -= 1
        self.refused = None
        self._metrics.spooled.inc()
        self._wake.set()
        return "spool"

    async def forward(self) -> None:
        """Forward the spool, oldest first; entries go only after their ack. Meanwhile a spool
        that cannot be written (a refused append, a marker not written) is tried again with
        backoff. After `stop`, returns once the spool is empty or Kafka does not acknowledge:
        at once if it never connected."""
        failures = 0
        while not self._stopped.is_set() or (len(self._spool) and self._link.up):
            if not len(self._spool):
                await self._idle()
            elif not self._link.started.is_set():
                await _first(self._link.started, self._stopped)
            elif await self._round():
                failures = 0
            elif self._stopped.is_set():
                break
            else:
                failures += 1
                await _wait(self._stopped, BACKOFF.delay(failures))
                await self._check_spool()
        if self._spool.unmarked:  # a last try, so that the next start sends fewer again
            with contextlib.suppress(SpoolError):
                await self._spool.mark()

    async def _round(self) -> bool:
        """Forward a batch from the head of the spool; False if not all of it went."""
        try:
            batch = self._spool.oldest(FORWARD_BATCH)
        except (SpoolError, OSError) as exc:  # an I/O error, a record changed: never sent altered
            self._reading.failed(exc)
            return False
        self._reading.ended()
        acked = await self._link.deliver_in_order(batch)
        if acked:
            # Removed in memory even when the marker cannot be written: never sent twice by
            # this process, counted once; the marker is retried with backoff, not every round.
            try:
                await self._spool.remove(acked, mark=not self._writing.wait())
            except SpoolError as exc:
                self._writing.failed(exc)
            else:
                if not self._spool.unmarked:
                    self._writing.ended()
            self._metrics.answers.produced += acked
            self.refused = None  # room again, or a writable spool: the next append tells
            if not len(self._spool):
                self._log.info("spool forwarded to Kafka")
        return acked == len(batch)

    async def _idle(self) -> None:
        """Wait for an append or `stop`; meanwhile check a spool that cannot be written."""
        self._wake.clear()
        if self.refused is None and not self._spool.unmarked:
            await self._wake.wait()
        elif not await _wait(self._wake, max(self._writing.wait(), BACKOFF.delay(1))):
            await self._check_spool()

    async def _check_spool(self) -> None:
        """Write the marker again, when due: it makes a marker left behind durable, and learns
        whether a spool that refused takes writes again, for readiness: an unready ingress gets
        no callback that could find out."""
        if (self.refused is None and not self._spool.unmarked) or self._writing.wait():
            return
        try:
            await self._spool.mark()
        except SpoolError as exc:
            self._writing.failed(exc)
            return
        self._writing.ended()
        self.refused = None

    def stop(self) -> None:
        """`forward` returns once the spool is forwarded, or at once if Kafka does not ack."""
        self._stopped.set()
        self._wake.set()


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Whether `event` is set within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def _first(*events: asyncio.Event) -> None:
    """Return once one of `events` is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
