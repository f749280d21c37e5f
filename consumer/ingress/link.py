"""The ingress's one producer: idempotent, ``acks=all``, started (and restarted) in the
background, so that an ingress whose Kafka is away still starts and takes callbacks into the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import KafkaError

from consumer.backoff import Backoff
from consumer.errors import KafkaConnectError
from consumer.ingress.deadlines import Deadlines
from consumer.ingress.partitions import partition_for
from consumer.ingress.spool import SpooledCallback
from consumer.kafka import connection
from consumer.kafka.clients import build_producer
from consumer.settings.config import KafkaSettings

BACKOFF = Backoff(0.5, 5.0, "none")
"""Between attempts to reach Kafka, and to forward the spool again: no jitter, one process."""
REQUEST_ROOM = 64 * 1024
"""Bytes a produce request needs beyond the largest body: headers and framing."""


class KafkaLink:
    """The producer and whether Kafka acknowledges: `up` is what the last produce found.
    `deliver` waits up to `ack_timeout` seconds for an ack."""

    def __init__(self, kafka: KafkaSettings, max_body_bytes: int, ack_timeout: float) -> None:
        self._kafka = kafka
        self._deadlines = Deadlines(ack_timeout)
        self._max_request = max(1_048_576, max_body_bytes + REQUEST_ROOM)
        self._producer: AIOKafkaProducer | None = None
        self._partitions: int | None = None
        """The topic's partition count as the producer's metadata has it; None when unknown."""
        self._up = False
        self.started = asyncio.Event()
        self._log = structlog.get_logger("consumer.ingress")

    async def connect(self) -> None:
        """Start the producer, retrying with backoff until a broker answers."""
        failures = 0
        while True:
            producer = build_producer(self._kafka, max_request_size=self._max_request)
            try:
                await connection.start(producer, self._kafka)
            except KafkaConnectError as exc:
                self._log.warning("Kafka not reachable; spooling callbacks", error=str(exc))
                failures += 1
                await asyncio.sleep(BACKOFF.delay(failures))
                continue
            self._producer = producer
            cluster = producer.client.cluster
            cluster.add_listener(self._count_partitions)
            self._count_partitions(cluster)
            self.up = True
            self.started.set()
            self._log.info("producing to Kafka", topic=self._kafka.topic)
            return

    def _count_partitions(self, cluster: ClusterMetadata) -> None:
        """On each metadata update: the partitions keys are spread over, as aiokafka counts them
        (its partitioner reads them per record, building a set each time)."""
        partitions = cluster.partitions_for_topic(self._kafka.topic)
        self._partitions = None if partitions is None else len(partitions)

    @property
    def up(self) -> bool:
        return self._up

    @up.setter
    def up(self, value: bool) -> None:
        """Logged when it changes: one line when Kafka stops acknowledging, one when it is back."""
        if value != self._up and self.started.is_set():
            if value:
                self._log.info("Kafka acknowledging again")
            else:
                self._log.warning("Kafka not acknowledging: callbacks go to the spool")
        self._up = value

    async def deliver(self, entry: SpooledCallback) -> bool:
        """Produce `entry`; True once Kafka acknowledged it within `ack_timeout` seconds.

        False leaves the record with the producer, which may still deliver it later: the
        caller's spooled copy is then a duplicate, an exact byte copy."""
        if self._producer is None:
            return False
        deadlines = self._deadlines
        wait = deadlines.start()
        try:
            # Cancelling the producer's future on timeout is harmless: it skips done ones.
            await (await self._send(self._producer, entry))
        except KafkaError:
            self.up = False
            return False
        except asyncio.CancelledError:
            if not deadlines.timed_out(wait):
                raise
            self.up = False
            return False
        finally:
            deadlines.finish(wait)
        self.up = True
        return True

    async def deliver_in_order(self, entries: Sequence[SpooledCallback]) -> int:
        """Produce `entries` in order; how many of the first ones Kafka acknowledged. Waits for
        every outcome (the producer's own request timeout bounds it), so a retry never stacks
        a second copy on records still in the producer."""
        assert self._producer is not None, "connect() first"
        pending = []
        with contextlib.suppress(KafkaError):  # e.g. no metadata in time: what was sent counts
            for entry in entries:
                pending.append(await self._send(self._producer, entry))
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        acked = 0
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                break
            acked += 1
        self.up = acked == len(entries)
        return acked

    async def _send(
        self, producer: AIOKafkaProducer, entry: SpooledCallback
    ) -> asyncio.Future[object]:
        topic, key = self._kafka.topic, entry.key
        partition = None
        if key is not None:  # where aiokafka's default partitioner would put it, found faster
            count = self._partitions
            if count is None:  # no metadata for the topic yet: wait for it, as send would
                count = len(await producer.partitions_for(topic))
            partition = partition_for(key, count)
        future: asyncio.Future[object] = await producer.send(
            topic, entry.value, key=key, partition=partition, headers=list(entry.headers)
        )
        return future

    async def close(self, grace: float) -> None:
        """Flush and stop the producer, for up to `grace` seconds."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        with contextlib.suppress(TimeoutError, KafkaError):
            async with asyncio.timeout(grace):
                await producer.stop()
