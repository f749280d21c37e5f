"""Retries, dead letters and their headers, through the real broker with in-process workers."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from structlog.testing import capture_logs

from consumer.cli.produce import produce
from consumer.engine.worker import Worker
from consumer.errors import PermanentFailure, RetryLater
from consumer.events import RecordingEvent
from consumer.handler_api import Context
from tests._support.kafka_helpers import (
    committed_and_end,
    read_topic,
    recording_message,
    settings_for,
    wait_for,
)

FAST_RETRIES = {
    "RETRY__INITIAL_DELAY": "0.1",
    "RETRY__MAX_DELAY": "0.4",
    "RETRY__MAX_ATTEMPTS": "3",
}


@dataclass
class Scripted:
    """Fails the first `failures` attempts per recording with `error`, then succeeds.

    With `only`, just that recording fails; the others succeed at once.
    """

    failures: int
    error: Callable[[], BaseException] = lambda: RuntimeError("media server said no")
    only: str | None = None
    attempts: dict[str, list[float]] = field(default_factory=dict)
    succeeded: list[str] = field(default_factory=list)

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        assert event.recording_id is not None
        seen = self.attempts.setdefault(event.recording_id, [])
        seen.append(time.monotonic())
        assert ctx.attempt == len(seen)
        if len(seen) <= self.failures and self.only in (None, event.recording_id):
            raise self.error()
        self.succeeded.append(event.recording_id)


async def test_fails_twice_then_succeeds_with_growing_backoff(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """Two failures, then success: three attempts, each wait within its doubling ceiling."""
    await create_topic(kafka_bootstrap, unique_name)
    settings = settings_for(kafka_bootstrap, unique_name, unique_name, **FAST_RETRIES)
    await produce(settings.kafka, unique_name, [recording_message("r-flaky")])
    flaky = Scripted(failures=2)
    with capture_logs() as logs:
        await asyncio.wait_for(Worker(settings, {"log": flaky}).run(until_idle=1.0), 60)

    assert flaky.succeeded == ["r-flaky"]
    times = flaky.attempts["r-flaky"]
    assert len(times) == 3
    retried = [e for e in logs if e.get("outcome") == "retried"]
    assert [e["attempts"] for e in retried] == [1, 2]
    for ceiling, entry, (before, after) in zip(
        (0.1, 0.2), retried, itertools.pairwise(times), strict=True
    ):
        assert 0 <= entry["delay"] <= ceiling
        assert after - before >= entry["delay"] - 0.01
    handled = [e for e in logs if e.get("outcome") == "handled"]
    assert len(handled) == 1
    assert handled[0]["attempts"] == 3
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end


async def test_always_failing_ends_in_dead_letter_topic_with_every_header(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """After max_attempts the original message and the failure's headers reach <topic>.dlq."""
    await create_topic(kafka_bootstrap, unique_name)
    settings = settings_for(kafka_bootstrap, unique_name, unique_name, **FAST_RETRIES)
    key, value = recording_message("r-doomed")
    await produce(settings.kafka, unique_name, [(key, value)])
    doomed = Scripted(failures=99)
    await asyncio.wait_for(Worker(settings, {"log": doomed}).run(until_idle=1.0), 60)

    assert len(doomed.attempts["r-doomed"]) == 3
    (dead,) = await read_topic(kafka_bootstrap, f"{unique_name}.dlq")
    assert (dead.key, dead.value) == (key, value)
    headers = {name: raw.decode() for name, raw in dead.headers}
    assert headers["dlq.topic"] == unique_name
    assert headers["dlq.partition"] == "0"
    assert headers["dlq.offset"] == "0"
    assert int(headers["dlq.timestamp"]) > 0
    assert headers["dlq.group"] == unique_name
    assert headers["dlq.handler"] == "log"
    assert headers["dlq.error.class"] == "RuntimeError"
    assert headers["dlq.error.message"] == "media server said no"
    assert headers["dlq.attempts"] == "3"
    assert headers["dlq.failure.first"] < headers["dlq.failure.last"]
    assert "dlq.error.path" not in headers
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end


async def test_permanent_failure_skips_retries_and_only_failed_handlers_rerun(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """A permanent error dead-letters at once; a retry re-runs only the handler that failed."""
    await create_topic(kafka_bootstrap, unique_name)
    settings = settings_for(kafka_bootstrap, unique_name, unique_name, **FAST_RETRIES)
    settings = msgspec.structs.replace(
        settings, routes={"complete": ["steady", "flaky"], "error": ["broken"]}
    )
    await produce(
        settings.kafka, unique_name, [recording_message("r-a"), recording_message("r-b", "error")]
    )
    steady, flaky = Scripted(failures=0), Scripted(failures=1)
    broken = Scripted(failures=99, error=lambda: PermanentFailure("404 from media API"))
    handlers = {"steady": steady, "flaky": flaky, "broken": broken}
    await asyncio.wait_for(Worker(settings, handlers).run(until_idle=1.0), 60)

    assert len(steady.attempts["r-a"]) == 1, "the handler that succeeded was not re-run"
    assert len(flaky.attempts["r-a"]) == 2
    assert len(broken.attempts["r-b"]) == 1
    (dead,) = await read_topic(kafka_bootstrap, f"{unique_name}.dlq")
    headers = {name: raw.decode() for name, raw in dead.headers}
    assert headers["dlq.error.class"] == "PermanentFailure"
    assert headers["dlq.attempts"] == "1"
    assert headers["dlq.handler"] == "broken"


async def test_retry_wait_does_not_hold_up_other_keys(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """While one recording waits 3 s for its retry, 200 others on its partition are handled."""
    await create_topic(kafka_bootstrap, unique_name)
    settings = settings_for(kafka_bootstrap, unique_name, unique_name)
    others = [recording_message(f"r-other-{n:03d}") for n in range(200)]
    await produce(settings.kafka, unique_name, [recording_message("r-slow"), *others])
    handler = Scripted(failures=1, error=lambda: RetryLater("429", delay=3.0), only="r-slow")
    worker = Worker(settings, {"log": handler})
    started = time.monotonic()
    run = asyncio.create_task(worker.run(until_idle=1.0))
    await wait_for(lambda: len(handler.succeeded) >= 200, seconds=30, what="other keys handled")
    others_done = time.monotonic() - started
    assert "r-slow" not in handler.succeeded, "others finished while r-slow was still waiting"
    await asyncio.wait_for(run, 60)
    gap = handler.attempts["r-slow"][1] - handler.attempts["r-slow"][0]
    assert gap >= 3.0
    print(
        f"\n200 other keys handled {others_done:.2f}s after start, during a {gap:.2f}s retry wait"
    )
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end


async def test_dead_letter_topic_unavailable_holds_the_commit(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """With on_unwritable = "stall", while the DLQ rejects writes the bad message's offset is
    not committed; then it lands."""
    await create_topic(kafka_bootstrap, unique_name)
    dlq = f"{unique_name}.dlq"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        # A 1-byte message limit makes every publish fail, like a topic refused by policy.
        await admin.create_topics([NewTopic(dlq, 1, 1, topic_configs={"max.message.bytes": "1"})])
        settings = settings_for(
            kafka_bootstrap, unique_name, unique_name, dead_letter__on_unwritable="stall"
        )
        bad = b'{"eventType":"recordingAvailable","channels":"one"}'
        await produce(settings.kafka, unique_name, [(None, bad), recording_message("r-after")])
        handler = Scripted(failures=0)
        worker = Worker(settings, {"log": handler})
        run = asyncio.create_task(worker.run(until_idle=1.0))
        await wait_for(lambda: handler.succeeded == ["r-after"], seconds=30, what="r-after")
        await asyncio.sleep(1.5)  # several commit intervals: long enough for a wrong commit
        committed, _ = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
        assert committed == {0: 0}, "nothing is committed past the undelivered dead letter"
        assert not run.done()
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, dlq, {"max.message.bytes": "1048588"})]
        )
        await asyncio.wait_for(run, 90)
    finally:
        await admin.close()
    (dead,) = await read_topic(kafka_bootstrap, dlq)
    assert dead.value == bad
    _, dlq_end = await committed_and_end(kafka_bootstrap, dlq, unique_name)
    assert dlq_end == {0: 1}, "dead-lettered exactly once"
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end


async def test_a_handler_raising_cancelled_error_is_retried_not_fatal(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """A stray CancelledError from a handler is a failed attempt; the worker keeps going."""
    await create_topic(kafka_bootstrap, unique_name)
    settings = settings_for(
        kafka_bootstrap, unique_name, unique_name, **FAST_RETRIES, ENGINE__MAX_IN_FLIGHT="1"
    )
    await produce(
        settings.kafka, unique_name, [recording_message("r-odd"), recording_message("r-next")]
    )
    odd = Scripted(failures=1, error=asyncio.CancelledError, only="r-odd")
    await asyncio.wait_for(Worker(settings, {"log": odd}).run(until_idle=1.0), 60)

    assert sorted(odd.succeeded) == ["r-next", "r-odd"]
    assert len(odd.attempts["r-odd"]) == 2
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end
