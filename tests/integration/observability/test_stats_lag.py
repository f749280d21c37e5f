"""The stats line's `lag` and /metrics' agree and are current, through a retry, on a real broker."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
from aiokafka import TopicPartition

from consumer import RetryLater
from consumer.cli.produce import produce
from consumer.events import RecordingEvent
from consumer.handler_api import Context
from tests._support.kafka_helpers import recording_message
from tests._support.observed import observed, observed_settings, routed, scrape, series, serving


class RetriedOnce:
    """Asks for a retry 3 s later on its first attempt, then succeeds."""

    def __init__(self) -> None:
        self.attempts = 0

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        self.attempts += 1
        if self.attempts == 1:
            raise RetryLater("not yet", delay=3.0)


async def test_stats_line_and_metrics_show_the_same_current_lag(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """While a message waits for its retry, the next stats line and /metrics both say lag 1;
    once it is handled and committed, the next stats line and /metrics both say 0."""
    await create_topic(kafka_bootstrap, unique_name)
    settings = observed_settings(kafka_bootstrap, unique_name, OBSERVABILITY__STATS_INTERVAL="0.2")
    tp = TopicPartition(unique_name, 0)
    handler = RetriedOnce()
    worker, observers = observed(routed(settings, {"default": ["once"]}), {"once": handler})
    with structlog.testing.capture_logs() as lines:
        async with serving(worker, observers) as (client, _):

            async def lag_series() -> dict[Any, float]:
                return series(await scrape(client), "recording_consumer_lag_messages")

            await until(lag_series, "no lag sample")
            await produce(settings.kafka, unique_name, [recording_message("r-late")])
            await until(lambda: worker.tally.outcomes["retried"] == 1, "no retry")
            assert handler.attempts == 1
            assert list((await lag_series()).values()) == [1]
            assert await next_stats_lag(lines) == 1

            await until(lambda: worker.committed_offset(tp) == 1, "not committed")
            assert worker.tally.outcomes["handled"] == 1
            assert list((await lag_series()).values()) == [0]
            assert await next_stats_lag(lines) == 0


async def next_stats_lag(lines: list[MutableMapping[str, Any]]) -> int:
    """The lag of the first stats line written from now on."""
    seen = len(lines)
    deadline = time.monotonic() + 10
    while True:
        stats = [line for line in lines[seen:] if line["event"] == "stats"]
        if stats:
            lag: int = stats[0]["lag"]
            return lag
        assert time.monotonic() < deadline, "no stats line"
        await asyncio.sleep(0.05)


async def until(check: Callable[[], object], failure: str) -> None:
    """Poll `check` (a function, or a coroutine function) until its result is truthy."""
    deadline = time.monotonic() + 30
    while not await _result(check()):
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(0.05)


async def _result(value: object) -> object:
    return await value if inspect.isawaitable(value) else value
