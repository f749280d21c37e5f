"""The worker: joins the group, takes in what it fetches, commits only what is finished.

One task fetches and hands each batch to the intake and the scheduler, ``max_in_flight``
runners run the jobs, the committer commits. Rebalances and shutdown wait (bounded) for running
handlers before handing over. It reports its health, attempt durations and deliveries to the
`Observer` it is built with (`consumer.engine.observers`), and runs that observer's watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Collection, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any, NamedTuple

import httpx
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from consumer.deadletters.publisher import (
    DeadLetterPublisher,
    dead_letter_topic,
    request_size,
)
from consumer.engine.backpressure import Backpressure
from consumer.engine.committer import Committer, partition_names
from consumer.engine.dedupe import RecentlyHandled
from consumer.engine.delivery import Delivery
from consumer.engine.intake import Intake, Job, OtherCallback, Undecodable
from consumer.engine.observers import Observer, Unobserved
from consumer.engine.rewind import TakenTo
from consumer.engine.scheduler import Queued, Scheduler
from consumer.engine.tally import Tally
from consumer.errors import UnreadableBatch
from consumer.handler_api import Handler, ProducerPublish, running
from consumer.http import shared_client
from consumer.kafka import connection
from consumer.kafka.clients import build_consumer, build_producer
from consumer.kafka.fetch_errors import BadHeaderKey, unreadable_batch
from consumer.kafka.record_batches import reread
from consumer.kafka.startup import wait_for_kafka
from consumer.settings.config import Settings
from consumer.settings.handover import COMMIT_WAIT


class Load(NamedTuple):
    """How busy the worker is now, for the metrics and the stats line."""

    in_flight: int
    buffered: int
    paused: int


class Worker:
    """One consumer-group member. `run` returns after `stop()` or, with `until_idle`, when idle."""

    def __init__(
        self,
        settings: Settings,
        handlers: Mapping[str, Handler],
        observer: Observer | None = None,
    ) -> None:
        self._settings = settings
        self._handlers = handlers
        self._observer = observer = observer or Unobserved()
        self._tracer = tracer = observer.tracer
        self._intake = Intake(settings, handlers if tracer is None else tracer.handlers(handlers))
        self.tally = Tally(durations=observer.durations)
        self._health = observer.health
        self._committer = Committer(settings.engine, self.tally, self._health)
        self._scheduler = Scheduler(self._committer, settings.engine.max_in_flight)
        self._consumer: AIOKafkaConsumer | None = None
        self._backpressure = Backpressure(settings.engine.max_buffered, self._committer)
        self._owned: set[TopicPartition] = set()
        """Assigned and not being revoked: only these partitions' positions move commit points."""
        self._taken_to = TakenTo(settings.kafka.auto_offset_reset)
        self._stopping = asyncio.Event()
        self._cancel_now = asyncio.Event()
        self._last_activity: float | None = None
        self._log = structlog.get_logger("consumer.worker")
        self.fatal: UnreadableBatch | None = None
        """Set when the worker stops on data it cannot read: readiness and metrics show it."""

    def stop(self) -> None:
        """Finish in-flight work, commit and leave; asked twice, cancel what is still running."""
        if self._stopping.is_set():
            self._log.warning("stopping now: cancelling running handlers")
            self._cancel_now.set()
        else:
            self._log.info("stopping: finishing running handlers")
        self._health.draining = True
        self._stopping.set()

    @property
    def settings(self) -> Settings:
        return self._settings

    def load(self) -> Load:
        return Load(self._scheduler.running, self._committer.in_flight(), self._backpressure.paused)

    def committed_offset(self, tp: TopicPartition) -> int | None:
        """The offset this worker last committed for `tp`, if it committed one."""
        return self._committer.committed_offset(tp)

    async def wait_committed(self, points: Mapping[TopicPartition, int]) -> None:
        """Return once this worker committed at least `points` (partition -> offset): the
        offset after the last message of interest, as `end_offsets` gives it."""
        await self._committer.wait_committed(points)

    async def run(self, until_idle: float | None = None) -> None:
        kafka, engine = self._settings.kafka, self._settings.engine
        if not await self._reach_kafka():
            return
        async with AsyncExitStack() as stack:
            consumer = build_consumer(
                kafka,
                group_id=kafka.group_id,
                auto_offset_reset=kafka.auto_offset_reset,
                session_timeout_ms=kafka.session_timeout_ms,
                heartbeat_interval_ms=kafka.heartbeat_interval_ms,
                max_poll_interval_ms=kafka.max_poll_interval_ms,
                # As Java clients do: the broker waits this long for a member to rejoin, which
                # covers the hand-over's wait for running handlers (checked at start-up).
                rebalance_timeout_ms=kafka.max_poll_interval_ms,
            )
            await connection.start(consumer, kafka)
            self._consumer = consumer
            stack.push_async_callback(self._leave, consumer)
            # Large enough for any message of the source topic, so every one can be dead-lettered.
            max_request = await request_size(kafka, self._settings.dead_letter.max_request_size)
            producer = build_producer(kafka, max_request_size=max_request)
            await connection.start(producer, kafka)
            stack.push_async_callback(producer.stop)
            http = await stack.enter_async_context(shared_client())
            delivery = await self._build_delivery(producer, http, max_request)
            await self._start_handlers(stack)
            consumer.subscribe([kafka.topic], listener=_Rebalance(self))
            self._log.info("worker started", topic=kafka.topic, group=kafka.group_id)
            async with asyncio.TaskGroup() as tg:
                runner = self._scheduler.runner
                tasks = [tg.create_task(runner(delivery, n)) for n in range(engine.max_in_flight)]
                tasks.append(tg.create_task(self._committer.run(consumer)))
                tasks += [tg.create_task(w) for w in self._observer.watchers(self, consumer)]
                try:
                    await self._fetch(consumer, until_idle)
                    await self._scheduler.drain(engine.shutdown_grace, self._cancel_now)
                finally:
                    for task in tasks:
                        task.cancel()
            if self.fatal is None:
                await self._note_positions(consumer)
            await self._committer.commit(consumer)
        if self.fatal is not None:
            raise self.fatal

    async def _build_delivery(
        self, producer: AIOKafkaProducer, http: httpx.AsyncClient, max_request: int
    ) -> Delivery:
        settings = self._settings
        dead_letters = DeadLetterPublisher(
            producer,
            settings.kafka,
            dead_letter_topic(settings),
            settings.kafka.group_id,
            settings.dead_letter,
            source_topic=settings.kafka.topic,
            max_message_bytes=max_request,
        )
        await dead_letters.ensure_topic()
        return Delivery(
            settings.retry,
            dead_letters,
            RecentlyHandled(settings.engine.dedupe_window),
            http,
            ProducerPublish(producer),
            self.tally,
            self._tracer,
        )

    async def _fetch(self, consumer: AIOKafkaConsumer, until_idle: float | None) -> None:
        max_records = self._settings.engine.fetch_max_records
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                # While paused, poll briefly: it keeps the member alive and notices the drain.
                timeout_ms = 20 if self._backpressure.paused else 200
                fetch = asyncio.ensure_future(
                    consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
                )
                await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
                self._health.last_fetch = time.monotonic()
                if not fetch.done():
                    fetch.cancel()
                    return
                try:
                    batch = fetch.result()
                except Exception as exc:
                    found = unreadable_batch(exc)
                    if found is None:
                        raise
                    if isinstance(found, BadHeaderKey):
                        found = await self._reread(consumer, found)
                        if found is None:
                            continue
                    self.fatal = found
                    if self.fatal.offset is not None:
                        bad = TopicPartition(self.fatal.topic, self.fatal.partition)
                        self._committer.stop_at(bad, self.fatal.offset)
                    self._log.error(
                        "unreadable batch, stopping",
                        topic=self.fatal.topic,
                        partition=self.fatal.partition,
                        offset=self.fatal.offset,
                        error=self.fatal.cause,
                    )
                    self._health.fail(str(self.fatal))
                    return
                if batch:
                    now = time.perf_counter()
                    for tp, messages in batch.items():
                        # A rebalance may revoke `tp` between the fetch's answer and this
                        # line: its records are the next owner's, never run beside it.
                        if tp in self._owned:
                            self._take(tp, messages, now)
                    self._last_activity = time.monotonic()
                await self._note_positions(consumer)
                self._backpressure.apply(consumer)
                if until_idle is not None and await self._idle_for(consumer, until_idle):
                    self._log.info("idle, stopping", idle_seconds=until_idle)
                    return
        finally:
            stop.cancel()

    async def _note_positions(self, consumer: AIOKafkaConsumer) -> None:
        """Let commit points pass offsets that are not records (transaction markers, aborted
        batches): without this a partition ending in a marker is never committed to its end.
        Also tells the committer whether the worker has caught up with every partition."""
        caught_up = True
        for tp in list(self._owned):
            # Known once a fetch answered for it; asking earlier would wait for the position.
            highwater = consumer.highwater(tp)
            if highwater is None:
                caught_up = False
                continue
            position = await consumer.position(tp)
            caught_up = caught_up and position >= highwater
            # A partition revoked meanwhile has handed its unfinished work over.
            if tp in self._owned:
                self._committer.reached(tp, position)
                self._taken_to.took(tp, position)
                self._health.fetched_to(tp, position)
        self._committer.fetched_to_end(caught_up)

    def _take(
        self,
        tp: TopicPartition,
        messages: Sequence[Any],
        now: float,
        refused: Mapping[int, str] | None = None,
    ) -> None:
        """One partition's fetched batch: its offsets recorded, its jobs queued by lane.
        `refused`: offsets of messages that cannot be read, with why."""
        committer, intake = self._committer, self._intake
        batch = committer.add(tp, [message.offset for message in messages])
        self._taken_to.took(tp, messages[-1].offset + 1)
        jobs: list[Queued] = []
        for index, message in enumerate(messages):
            work: Job[Handler] | OtherCallback | Undecodable
            if refused and message.offset in refused:
                work = intake.refuse(message, refused[message.offset])
            else:
                work = intake(message)
            if type(work) is OtherCallback:
                self._skip(work)
                committer.finish(batch, index)
                continue
            work.batch, work.index, work.started = batch, index, now
            if type(work) is Job and work.event.malformed_raw:
                self._log.warning(
                    "malformed fields kept as raw text",
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=message.offset,
                    fields=list(work.event.malformed),
                    **work.event.summary(),
                )
            jobs.append(work)
        self._scheduler.submit(tp, jobs)

    async def _reread(
        self, consumer: AIOKafkaConsumer, bad: BadHeaderKey
    ) -> UnreadableBatch | None:
        """aiokafka failed on a header key that is not UTF-8: read that partition up to the end
        of the failed batch without it, dead-letter the records with such a key, and go on past
        them. The failed fetch may have consumed other partitions' records before it failed,
        and lost them with the exception: those are rewound to what the intake took. None when
        done; else why the worker must stop."""
        if bad.tp not in self._owned:
            return None  # being revoked: its next owner meets the batch again
        where = {"topic": bad.tp.topic, "partition": bad.tp.partition, "offset": bad.offset}
        unknown = await self._taken_to.rewind(consumer, self._owned - {bad.tp}, self._owned)
        if unknown is not None:
            cause = f"{unknown.topic}/{unknown.partition} has no known position to rewind to"
            return UnreadableBatch(bad.tp.topic, bad.tp.partition, bad.offset, cause)
        start = await consumer.position(bad.tp)
        try:
            read = await reread(self._settings.kafka, bad.tp, start, bad.offset)
        except Exception as exc:
            cause = f"a header key is not UTF-8 and re-reading failed: {exc!r}"
            return UnreadableBatch(bad.tp.topic, bad.tp.partition, bad.offset, cause)
        self._log.warning(
            "header key not UTF-8, batch re-read",
            **where,
            refused=sorted(read.refused),
            next_offset=read.next_offset,
        )
        if bad.tp not in self._owned:
            return None  # revoked meanwhile: its next owner reads the batch again
        if read.records:
            self._take(bad.tp, read.records, time.perf_counter(), read.refused)
            self._last_activity = time.monotonic()
        consumer.seek(bad.tp, read.next_offset)
        self._taken_to.took(bad.tp, read.next_offset)
        return None

    def _skip(self, skipped: OtherCallback) -> None:
        record = skipped.record
        log = self._log.debug if skipped.policy == "skip" else self._log.warning
        log(
            "message",
            outcome="skipped",
            reason="not a recording event" if skipped.known else "unknown event type",
            eventType=skipped.event_type,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        self.tally.finished("skipped", None, skipped.event_type)

    async def _idle_for(self, consumer: AIOKafkaConsumer, seconds: float) -> bool:
        if (
            self._last_activity is None
            or time.monotonic() - self._last_activity < seconds
            or self._committer.pending()
        ):
            return False
        # Idle means a fetch showed nothing is left, not merely that none came back in time.
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None or await consumer.position(tp) < highwater:
                return False
        return True

    async def _reach_kafka(self) -> bool:
        """Wait for the broker; False when stopped meanwhile (SIGTERM during start-up)."""
        reach = asyncio.ensure_future(wait_for_kafka(self._settings.kafka, self._waiting_for_kafka))
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({reach, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if reach.done():
            reach.result()
            return True
        reach.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reach
        return False

    def _waiting_for_kafka(self, attempt: int, error: str, left: float) -> None:
        self._log.warning(
            "waiting for Kafka",
            bootstrap=self._settings.kafka.bootstrap_servers,
            attempt=attempt,
            error=error,
            gives_up_in=round(left),
        )

    async def _start_handlers(self, stack: AsyncExitStack) -> None:
        for name, handler in self._handlers.items():
            await stack.enter_async_context(running(handler, name))

    async def hand_over(self, revoked: Collection[TopicPartition]) -> None:
        """Give partitions up having finished, or given up on, what was running for them."""
        self._health.revoked(revoked)
        self._owned -= set(revoked)
        self._taken_to.forget(revoked)
        grace = self._settings.engine.shutdown_grace
        try:
            if not await self._scheduler.quiesce(revoked, grace, self._cancel_now):
                self._log.warning(
                    "revoked with handlers still running", partitions=partition_names(revoked)
                )
            # Bounded: the member must rejoin within the rebalance timeout. What is not
            # committed in time is redone by the next owner, never run beside it.
            async with asyncio.timeout(COMMIT_WAIT):
                if self._consumer is not None:
                    await self._committer.commit(self._consumer, revoked)
        except TimeoutError:
            self._log.warning("hand-over commit timed out", partitions=partition_names(revoked))
        finally:
            # aiokafka swallows a listener's exception: the hand-over must happen regardless.
            self._scheduler.forget(revoked)
            self._committer.forget(revoked)
            self._backpressure.forget(revoked)
        if revoked:
            self._log.info("partitions revoked", partitions=partition_names(revoked))

    def take_over(self, assigned: Collection[TopicPartition]) -> None:
        """Partitions assigned to this worker by a rebalance."""
        self._scheduler.assigned(assigned)
        self.tally.rebalances += 1
        self._health.assigned(assigned)
        self._owned |= set(assigned)
        self._last_activity = time.monotonic()
        self._log.info("partitions assigned", partitions=partition_names(assigned))

    async def _leave(self, consumer: AIOKafkaConsumer) -> None:
        await consumer.stop()
        self._log.info("worker stopped", outcomes=dict(self.tally.outcomes))


class _Rebalance:
    """Tells the worker which partitions it gives up and which it gets."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker.hand_over(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._worker.take_over(assigned)


# Registered, not subclassed: aiokafka has no type hints, so a subclass would be Any to mypy.
# `subscribe` asks only that the listener be an instance of the ABC.
ConsumerRebalanceListener.register(_Rebalance)
