"""Watchers running beside the worker: broker reachability and lag, the event loop, a stats line.

A probe of the broker every few seconds doubles as the lag sample: the end offsets of the
assigned partitions, fetched even while they are paused or idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from consumer.kafka.startup import port_refusal
from consumer.observability.health import Health
from consumer.observability.view import WorkerView

PROBE_EVERY = 2.0
PROBE_TIMEOUT = 5.0
"""A probe slower than this counts as a failure: a hung broker is as unusable as a dead one."""
TICK = 0.1

_log = structlog.get_logger("consumer.watch")


async def watch_broker(worker: WorkerView, health: Health, consumer: AIOKafkaConsumer) -> None:
    """Probe the broker, keep lag current, log an outage's start and end once each."""
    start_points: dict[TopicPartition, int] = {}
    rebalances = worker.tally.rebalances
    while True:
        if worker.tally.rebalances != rebalances:  # the group's offsets may have moved since
            start_points.clear()
            rebalances = worker.tally.rebalances
        await _probe(worker, health, consumer, start_points)
        await asyncio.sleep(PROBE_EVERY)


async def log_stats(worker: WorkerView, health: Health) -> None:
    """Every ``observability.stats_interval`` seconds, one line of rates, outcomes and load."""
    every = worker.settings.observability.stats_interval
    if not every:
        return
    last, before = time.monotonic(), worker.tally.outcomes.copy()
    while True:
        await asyncio.sleep(every)
        now, outcomes = time.monotonic(), worker.tally.outcomes.copy()
        delta = outcomes - before
        finished = sum(n for outcome, n in delta.items() if outcome != "retried")
        load = worker.load()
        _log.info(
            "stats",
            seconds=round(now - last, 1),
            messages_per_second=round(finished / (now - last), 1),
            outcomes=dict(sorted(delta.items())),
            lag=sum(health.lag.values()),
            in_flight=load.in_flight,
            buffered=load.buffered,
            paused_partitions=load.paused,
            broker_reachable=health.down_since is None,
        )
        last, before = now, outcomes


async def watch_loop(worker: WorkerView, health: Health) -> None:
    """Note how late the loop runs a short timer: a late one means something blocked it."""
    loop = asyncio.get_running_loop()
    health.loop_ran(0.0)
    try:
        while True:
            asked = loop.time()
            await asyncio.sleep(TICK)
            late = loop.time() - asked - TICK
            health.loop_ran(late)
            if late >= worker.settings.observability.loop_block_timeout:
                _log.warning("event loop blocked", seconds=round(late, 1))
    finally:
        health.last_tick = None


async def _probe(
    worker: WorkerView,
    health: Health,
    consumer: AIOKafkaConsumer,
    start_points: dict[TopicPartition, int],
) -> None:
    assigned = sorted(consumer.assignment())
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            if not assigned:
                await consumer.topics()
                ends: dict[TopicPartition, int] = {}
            else:
                ends = await consumer.end_offsets(assigned)
            bases = {}
            for tp in assigned:
                committed = worker.committed_offset(tp)
                if committed is None:
                    committed = start_points.get(tp)
                if committed is None:
                    committed = start_points[tp] = await _start_point(worker, consumer, tp)
                bases[tp] = committed
    except (KafkaError, OSError, TimeoutError) as exc:
        if health.down_since is None:
            health.down_since = time.monotonic()
            bootstrap = worker.settings.kafka.bootstrap_servers
            _log.error("broker unreachable", bootstrap=bootstrap, error=await _why(bootstrap, exc))
        return
    if health.down_since is not None:
        outage = time.monotonic() - health.down_since
        health.down_since = None
        _log.warning("broker reachable again", outage_seconds=round(outage, 1))
    health.sampled_lag(ends, bases)


async def _why(bootstrap: str, exc: Exception) -> str:
    """A refused connection says more than the client's timeout or not-ready error."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(PROBE_TIMEOUT):
            refused = await port_refusal(bootstrap)
            if refused is not None:
                return refused
    return f"no answer within {PROBE_TIMEOUT:.0f} s" if isinstance(exc, TimeoutError) else repr(exc)


async def _start_point(worker: WorkerView, consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    """Where this group stood on `tp` before this worker committed anything to it."""
    committed: int | None = await consumer.committed(tp)
    if committed is not None:
        return committed
    # Never committed: the group started where auto_offset_reset put it.
    if worker.settings.kafka.auto_offset_reset == "earliest":
        start: int = (await consumer.beginning_offsets([tp]))[tp]
    else:
        start = await consumer.position(tp)
    return start
