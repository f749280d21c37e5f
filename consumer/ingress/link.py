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
from consumer.redaction import error_line
from consumer.settings.config import KafkaSettings

BACKOFF = Backoff(0.5, 5.0, "none")
"""Between attempts to reach Kafka, and to forward the spool again: no jitter, one process."""
REQUEST_ROOM = 64 * 1024
"""Bytes a produce request needs beyond the largest body: headers and framing."""
PROBE_TIMEOUT = 10.0
"""Seconds a metadata request asking whether Kafka is back may take."""


class KafkaLink:
    """The producer and whether Kafka acknowledges: `up` is what the last produce found, or
    while none is tried, a metadata request. `deliver` waits up to `ack_timeout` s for an ack."""

    def __init__(self, kafka: KafkaSettings, max_body_bytes: int, ack_timeout: float) -> None:
        self._kafka = kafka
        self._deadlines = Deadlines(ack_timeout)
        self._max_request = max(1_048_576, max_body_bytes + REQUEST_ROOM)
        self._producer: AIOKafkaProducer | None = None
        self._partitions: int | None = None
        """The topic's partition count as the producer's metadata has it; None when unknown."""
        self._up = False
        self._down = asyncio.Event()
        """Set while `up` is False after the start: `_watch` then looks for Kafka's return."""
        self._acked = False
        """An acknowledgement (not `_watch`) set `up` last."""
        self._attempts = 0
        """Produce attempts so far: while they go on, they tell whether Kafka is back."""
        self.started = asyncio.Event()
        self._log = structlog.get_logger("consumer.ingress")

    async def connect(self) -> None:
        """Start the producer, retrying with backoff until a broker answers; then, for as long
        as this runs, watch for Kafka's return whenever it stops acknowledging (`_watch`)."""
        producer = await self._start()
        self._producer = producer
        cluster = producer.client.cluster
        cluster.add_listener(self._count_partitions)
        self._count_partitions(cluster)
        producer.client.add_topic(self._kafka.topic)  # so that `_answers` learns of its leaders
        self.up = True
        self.started.set()
        self._log.info("producing to Kafka", topic=self._kafka.topic)
        await self._watch(producer)

    async def _start(self) -> AIOKafkaProducer:
        failures = 0
        while True:
            producer = None
            try:
                producer = build_producer(self._kafka, max_request_size=self._max_request)
                await connection.start(producer, self._kafka)
            except KafkaConnectError as exc:
                self._log.warning("Kafka not reachable; spooling callbacks", error=str(exc))
            except Exception as exc:  # whatever else the client raises: the spool takes over
                self._log.error(
                    "cannot start the Kafka producer; spooling callbacks", error=error_line(exc)
                )
                if producer is not None:
                    with contextlib.suppress(Exception):
                        await producer.stop()
            else:
                return producer
            failures += 1
            await asyncio.sleep(BACKOFF.delay(failures))

    async def _watch(self, producer: AIOKafkaProducer) -> None:
        """While Kafka does not acknowledge and nothing is produced that would find out (no
        callback arrives, the spool is empty), ask it for the topic's metadata with backoff:
        `up` again once every partition has a leader. Else `up`, and readiness with it, would
        wait for a callback, and an unready ingress gets none."""
        failures = 0
        while True:
            await self._down.wait()
            if self._acked:  # down after an ack: a new outage, so the backoff starts afresh
                failures, self._acked = 0, False
            failures += 1
            attempts = self._attempts
            await asyncio.sleep(BACKOFF.delay(failures))
            if self._up or self._attempts != attempts or not await self._answers(producer):
                continue
            if self._up or self._attempts != attempts:  # a produce answered during the request
                continue
            self._log.info("Kafka answering again: callbacks go to Kafka")
            self._up = True  # not `up`'s setter: this is no acknowledgement
            self._down.clear()

    async def _answers(self, producer: AIOKafkaProducer) -> bool:
        """Whether Kafka answers a metadata request with a leader for every partition."""
        topic, client = self._kafka.topic, producer.client
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                updated = await client.force_metadata_update()  # shielded: cancelling is safe
        except TimeoutError:
            return False
        except Exception as exc:  # a client error must not end the watch: next time, then
            self._log.warning("cannot ask Kafka for metadata", error=error_line(exc))
            return False
        partitions = client.cluster.partitions_for_topic(topic)
        available = client.cluster.available_partitions_for_topic(topic)
        return bool(updated) and bool(partitions) and available == partitions

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
        if value:
            self._acked = True
            self._down.clear()
        else:
            self._down.set()

    async def deliver(self, entry: SpooledCallback) -> bool:
        """Produce `entry`; True once Kafka acknowledged it within `ack_timeout` seconds.

        False leaves the record with the producer, which may still deliver it later: the
        caller's spooled copy is then a duplicate, an exact byte copy."""
        if self._producer is None:
            return False
        self._attempts += 1
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
        if not (self._up and self._acked):  # the setter only on a change: this runs per callback
            self.up = True
        return True

    async def deliver_in_order(self, entries: Sequence[SpooledCallback]) -> int:
        """Produce `entries` in order; how many of the first ones Kafka acknowledged. Waits for
        every outcome (the producer's own request timeout bounds it), so a retry never stacks
        a second copy on records still in the producer."""
        assert self._producer is not None, "connect() first"
        self._attempts += 1
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
