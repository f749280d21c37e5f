"""The worker's HTTP endpoint against the real broker: /metrics counts, /readyz, /healthz."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import msgspec

from consumer.cli.produce import produce
from consumer.events import RecordingEvent
from consumer.handler_api import Context, Handler
from tests._support.kafka_helpers import Recorder, recording_message
from tests._support.observed import (
    Broken,
    Gate,
    Samples,
    observed,
    observed_settings,
    routed,
    scrape,
    series,
    serving,
)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def status_of(client: httpx.AsyncClient, path: str) -> int:
    return (await client.get(path)).status_code


async def test_metrics_count_what_was_produced(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """A run with poison messages, duplicates, other events and a failing handler: every
    counter equals what was produced, retries and dead letters are counted, lag reaches 0."""
    await create_topic(kafka_bootstrap, unique_name, partitions=3)
    settings = observed_settings(kafka_bootstrap, unique_name)
    settings = routed(settings, {"partial": ["ok", "broken"], "default": ["ok"]})
    good = [recording_message(f"r-{n:04d}", "complete") for n in range(300)]
    failing = [recording_message(f"r-p-{n:03d}", "partial") for n in range(20)]
    odd_status = [recording_message(f"r-w-{n:03d}", "transcoding") for n in range(5)]
    poison = [(f"poison-{n}".encode(), b"{not json") for n in range(10)]
    answer = {"eventType": "answer", "callId": "c-answered"}
    answers = [(None, msgspec.json.encode(answer))] * 5
    repeats = good[:5]  # same key, so after their originals: dropped as duplicates
    messages = good + failing + odd_status + poison + answers + repeats
    await produce(settings.kafka, unique_name, messages)
    handlers: dict[str, Handler] = {"ok": Recorder(), "broken": Broken()}
    worker, observers = observed(settings, handlers)

    async with serving(worker, observers) as (client, _):
        samples: Samples = {}

        async def settled() -> bool:
            nonlocal samples
            samples = await scrape(client)
            finished = sum(series(samples, "recording_consumer_messages_total").values())
            lag = series(samples, "recording_consumer_lag_messages")
            return finished == len(messages) and len(lag) == 3 and not any(lag.values())

        deadline = time.monotonic() + 60
        while not await settled():
            assert time.monotonic() < deadline, f"not settled: {samples}"
            await asyncio.sleep(0.3)

    messages_total = "recording_consumer_messages_total"
    recording = "recordingAvailable"
    assert series(samples, messages_total) == {
        (("event_type", recording), ("outcome", "handled"), ("status", "complete")): 300,
        (("event_type", recording), ("outcome", "dead_lettered"), ("status", "partial")): 20,
        (("event_type", recording), ("outcome", "handled"), ("status", "other")): 5,
        (("event_type", "other"), ("outcome", "undecodable"), ("status", "other")): 10,
        (("event_type", "answer"), ("outcome", "skipped"), ("status", "other")): 5,
        (("event_type", recording), ("outcome", "duplicate"), ("status", "complete")): 5,
    }
    assert value(samples, "recording_consumer_retries_total", handler="broken") == 20
    dead_letters = "recording_consumer_dead_letters_total"
    assert value(samples, dead_letters, reason="handler_failed") == 20
    assert value(samples, dead_letters, reason="undecodable") == 10
    duration = "recording_consumer_handler_duration_seconds_count"
    assert value(samples, duration, handler="ok", result="ok") == 325
    assert value(samples, duration, handler="broken", result="retry") == 20
    assert value(samples, duration, handler="broken", result="failed") == 20
    lag = series(samples, "recording_consumer_lag_messages")
    assert {dict(labels)["partition"] for labels in lag} == {"0", "1", "2"}
    assert {dict(labels)["topic"] for labels in lag} == {unique_name}
    assert value(samples, "recording_consumer_commits_total") >= 1
    assert value(samples, "recording_consumer_rebalances_total") >= 1
    assert len(series(samples, "recording_consumer_last_commit_timestamp_seconds")) == 3
    assert value(samples, "recording_consumer_in_flight") == 0
    assert value(samples, "recording_consumer_buffered") == 0
    assert value(samples, "recording_consumer_ready") == 1


async def test_readyz_follows_start_assignment_and_drain(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """/readyz is 503 before the assignment, 200 once assigned, 503 again while draining."""
    await create_topic(kafka_bootstrap, unique_name)
    gate = Gate()
    worker, observers = observed(
        routed(observed_settings(kafka_bootstrap, unique_name), {"default": ["g"]}), {"g": gate}
    )
    async with serving(worker, observers) as (client, run):
        before = await client.get("/readyz")
        assert before.status_code == 503
        assert "waiting for the group's assignment" in before.json()["problems"]
        await wait_until_status(client, "/readyz", 200)
        assert await status_of(client, "/healthz") == 200
        await produce(worker.settings.kafka, unique_name, [recording_message("r-held")])
        await asyncio.wait_for(gate.entered.wait(), 30)
        worker.stop()
        draining = await client.get("/readyz")
        assert draining.status_code == 503
        assert draining.json()["problems"] == ["draining for shutdown"]
        assert not run.done()
        gate.release.set()


async def test_healthz_fails_while_the_loop_is_blocked(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """A handler blocking the event loop past loop_block_timeout turns /healthz 503; 200 after."""
    await create_topic(kafka_bootstrap, unique_name)
    blocking = threading.Event()

    class Blocker:
        async def handle(self, event: RecordingEvent, ctx: Context) -> None:
            blocking.set()
            time.sleep(2.5)  # noqa: ASYNC251 - the bug under test: blocking the loop

    settings = observed_settings(
        kafka_bootstrap, unique_name, OBSERVABILITY__LOOP_BLOCK_TIMEOUT="1.0"
    )
    worker, observers = observed(routed(settings, {"default": ["b"]}), {"b": Blocker()})
    url = f"http://{settings.observability.listen}/healthz"

    def probe_during_block() -> httpx.Response:
        # From a thread: the test's own coroutines are stuck on the blocked loop too.
        assert blocking.wait(60), "the handler never ran"
        return httpx.get(url, timeout=30)

    async with serving(worker, observers) as (client, _):
        await wait_until_status(client, "/readyz", 200)
        probe = asyncio.create_task(asyncio.to_thread(probe_during_block))
        await produce(settings.kafka, unique_name, [recording_message("r-blocks")])
        during = await asyncio.wait_for(probe, 60)
        assert during.status_code == 503
        assert "event loop" in during.json()["problems"][0]
        await wait_until_status(client, "/healthz", 200)


async def test_healthz_fails_while_a_lagging_partition_stalls(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """A partition with lag that commits nothing past stall_timeout turns /healthz 503; once
    the held message finishes and commits, 200 again."""
    await create_topic(kafka_bootstrap, unique_name)
    gate = Gate()
    settings = observed_settings(kafka_bootstrap, unique_name, OBSERVABILITY__STALL_TIMEOUT="1.5")
    worker, observers = observed(routed(settings, {"default": ["g"]}), {"g": gate})
    await produce(settings.kafka, unique_name, [recording_message(f"r-{n}") for n in range(5)])
    async with serving(worker, observers) as (client, _):
        await asyncio.wait_for(gate.entered.wait(), 30)
        stalled = await wait_until_status(client, "/healthz", 503)
        assert f"{unique_name}/0: 5 behind" in stalled["problems"][0]
        assert await status_of(client, "/readyz") == 200
        gate.release.set()
        await wait_until_status(client, "/healthz", 200)
        samples = await scrape(client)
        assert (
            value(samples, "recording_consumer_lag_messages", topic=unique_name, partition="0") == 0
        )


async def wait_until_status(client: httpx.AsyncClient, path: str, status: int) -> Any:
    """Poll `path` until it answers `status` (30 s at most); returns the JSON body."""
    found: dict[str, Any] = {}

    async def answered() -> bool:
        response = await client.get(path)
        found["body"] = response.json()
        return response.status_code == status

    deadline = time.monotonic() + 30
    while not await answered():
        assert time.monotonic() < deadline, f"{path} never answered {status}: {found}"
        await asyncio.sleep(0.1)
    return found["body"]
