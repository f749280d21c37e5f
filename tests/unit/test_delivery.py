"""Delivery with stand-in handlers and dead letters: retries, timeouts, dead letters and dedupe
as pure asyncio, no broker (the real-broker tests in test_retries.py and test_deadletter.py stay).

Delivery runs one attempt per call and returns the seconds until the next is due; `deliver`
plays the scheduler's part without waiting those seconds out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, MutableMapping, Sequence
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import structlog
from aiokafka import TopicPartition
from structlog.testing import capture_logs

from consumer.cli.run import _print_summary as print_summary
from consumer.deadletters.headers import Failure
from consumer.engine.dedupe import KEPT_WHOLE, RecentlyHandled
from consumer.engine.delivery import Delivery, Route
from consumer.engine.intake import Job, Undecodable
from consumer.engine.scheduler import Scheduler
from consumer.engine.tally import Tally
from consumer.errors import DecodeError, PermanentFailure, RetryLater, Skipped
from consumer.events import RecordingAvailable, RecordingEvent, encode_event
from consumer.handler_api import Context, Handler, Record
from consumer.observability.metrics import Durations
from consumer.settings.config import RetryOverride, RetrySettings
from tests._support.kafka_helpers import FinishedOffsets

Logs = list[MutableMapping[str, Any]]
FAST: dict[str, Any] = {"max_attempts": 3, "initial_delay": 0.01, "max_delay": 0.05}
"""Retry settings small enough that nothing here waits noticeably."""


class DeadLetterBox:
    """A stand-in dead-letter publisher: keeps what it is given, after failing `failures` calls."""

    def __init__(self, failures: int = 0) -> None:
        self.published: list[tuple[Record, bytes | None, Failure]] = []
        self.calls = 0
        self._failures = failures

    async def publish(self, record: Record, value: bytes | None, failure: Failure) -> None:
        self.calls += 1
        if self.calls <= self._failures:
            raise ConnectionError("dead-letter topic unreachable")
        self.published.append((record, value, failure))


class Scripted:
    """A handler raising `errors` one per attempt, then succeeding; notes each ctx.attempt."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.attempts: list[int] = []

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        self.attempts.append(ctx.attempt)
        if len(self.attempts) <= len(self.errors):
            raise self.errors[len(self.attempts) - 1]


class Hangs:
    """A handler that never returns on the attempts listed in `hang_on`, and succeeds on others."""

    def __init__(self, *hang_on: int) -> None:
        self.hang_on = hang_on
        self.attempts: list[int] = []
        self.started = asyncio.Event()

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        self.attempts.append(ctx.attempt)
        self.started.set()
        if ctx.attempt in self.hang_on:
            await asyncio.Event().wait()


async def no_publish(
    topic: str,
    value: bytes,
    *,
    key: bytes | None = None,
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> None:
    raise AssertionError("no handler here publishes")


def refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError("no handler here makes HTTP requests")


@pytest.fixture
def logs() -> Iterator[Logs]:
    """Every line at every level; Delivery reads the enabled levels when built, so build it here."""
    config = structlog.get_config()
    structlog.reset_defaults()
    try:
        with capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(**config)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The client Delivery hands handlers; these never use it, and it could reach nothing."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        yield client


class Rig:
    """A Delivery with a stand-in dead-letter publisher and a real tally."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        dead_letters: DeadLetterBox | None = None,
        dedupe_window: int = 0,
        **retry: Any,
    ) -> None:
        self.dead_letters = dead_letters or DeadLetterBox()
        self.durations = Durations()
        self.tally = Tally(durations=self.durations)
        self.delivery = Delivery(
            RetrySettings(**(FAST | retry)),
            self.dead_letters,
            RecentlyHandled(dedupe_window),
            http,
            no_publish,
            self.tally,
        )

    async def deliver(self, work: Job[Handler] | Undecodable) -> list[float]:
        """Attempt `work` until Delivery finishes it; returns the retry delays it asked for."""
        delays: list[float] = []
        for _ in range(20):
            delay = await self.delivery.attempt(work)
            if delay is None:
                return delays
            delays.append(delay)
        raise AssertionError(f"still retrying after 20 attempts: {delays}")

    @property
    def failures(self) -> list[Failure]:
        return [failure for _, _, failure in self.dead_letters.published]


def job(route: Route, offset: int = 0, media_url: str = "https://media/r-1") -> Job[Handler]:
    """A decoded recording event of recording r-1, as the intake makes one."""
    event = RecordingAvailable(recording_id="r-1", status="complete", media_url=media_url)
    value = encode_event(event)
    record = Record("recordings", 0, offset, b"r-1", (), 1_700_000_000_000)
    made: Job[Handler] = Job(record, value, b"r-1", event, None, route)
    made.started = time.perf_counter()
    return made


def lines(logs: Logs, outcome: str) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line.get("outcome") == outcome]


async def test_fails_twice_then_succeeds_with_delays_growing_per_policy(
    http: httpx.AsyncClient, logs: Logs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempts 1, 2, 3 reach the handler; with jitter at its ceiling the delays double."""
    monkeypatch.setattr("consumer.backoff.random", SimpleNamespace(uniform=lambda a, b: b))
    rig = Rig(http)
    flaky = Scripted(RuntimeError("media server said no"), RuntimeError("again"))
    delays = await rig.deliver(job((("flaky", flaky),)))

    assert flaky.attempts == [1, 2, 3]
    assert delays == [0.01, 0.02]
    assert rig.dead_letters.published == []
    assert [(e["attempts"], e["delay"], e["error"]) for e in lines(logs, "retried")] == [
        (1, 0.01, "RuntimeError: media server said no"),
        (2, 0.02, "RuntimeError: again"),
    ]
    (handled,) = lines(logs, "handled")
    assert (handled["attempts"], handled["handlers"]) == (3, ("flaky",))
    assert rig.tally.outcomes == {"retried": 2, "handled": 1}
    assert rig.tally.retries == {"flaky": 2}


async def test_retry_delays_stay_under_the_doubling_ceiling_with_real_jitter(
    http: httpx.AsyncClient,
) -> None:
    """Unpatched full jitter: each delay lies between 0 and its attempt's capped ceiling."""
    rig = Rig(http, max_attempts=6, initial_delay=0.01, max_delay=0.03)
    always = Scripted(*(RuntimeError(str(n)) for n in range(6)))
    delays = await rig.deliver(job((("always", always),)))

    assert len(delays) == 5
    for delay, ceiling in zip(delays, (0.01, 0.02, 0.03, 0.03, 0.03), strict=True):
        assert 0 <= delay <= ceiling


async def test_always_failing_is_dead_lettered_once_after_max_attempts(
    http: httpx.AsyncClient, logs: Logs
) -> None:
    """Given up after max_attempts: one dead letter with handler, attempts, times, last error."""
    rig = Rig(http)
    doomed = Scripted(*(RuntimeError(f"no {n}") for n in range(1, 4)))
    work = job((("doomed", doomed),))
    before = time.time()
    delays = await rig.deliver(work)
    after = time.time()

    assert doomed.attempts == [1, 2, 3]
    assert len(delays) == 2
    ((record, value, failure),) = rig.dead_letters.published
    assert (record, value) == (work.record, work.value)
    assert failure.handler == "doomed"
    assert failure.attempts == 3
    assert (failure.error_class, failure.message, failure.path) == ("RuntimeError", "no 3", None)
    assert before <= failure.first_failure <= failure.last_failure <= after
    (dead,) = lines(logs, "dead_lettered")
    assert dead["log_level"] == "error"
    assert (dead["handlers"], dead["attempts"]) == (["doomed"], 3)
    assert rig.tally.dead_letters == {"handler_failed": 1}
    assert rig.tally.outcomes == {"retried": 2, "dead_lettered": 1}


async def test_permanent_failure_is_dead_lettered_without_retries(
    http: httpx.AsyncClient,
) -> None:
    """PermanentFailure on the first attempt: no retry, a dead letter saying one attempt."""
    rig = Rig(http)
    refused = Scripted(PermanentFailure("404 for the media URL"))
    delays = await rig.deliver(job((("refused", refused),)))

    assert refused.attempts == [1]
    assert delays == []
    (failure,) = rig.failures
    assert (failure.handler, failure.attempts) == ("refused", 1)
    assert (failure.error_class, failure.message) == ("PermanentFailure", "404 for the media URL")
    assert failure.first_failure == failure.last_failure


async def test_retry_later_delay_is_honoured_and_capped_at_max_delay(
    http: httpx.AsyncClient,
) -> None:
    """RetryLater(delay) is the delay returned, as it is, and never above max_delay."""
    rig = Rig(http, max_delay=0.05)
    throttled = Scripted(RetryLater("429", delay=0.004), RetryLater("429", delay=120))
    delays = await rig.deliver(job((("throttled", throttled),)))

    assert delays == [0.004, 0.05]
    assert throttled.attempts == [1, 2, 3]
    assert rig.failures == []


async def test_only_the_failed_handler_reruns_when_two_are_routed(
    http: httpx.AsyncClient, logs: Logs
) -> None:
    """Of two routed handlers, a retry runs only the one that failed; the message counts once."""
    rig = Rig(http)
    steady, flaky = Scripted(), Scripted(RuntimeError("blip"))
    delays = await rig.deliver(job((("steady", steady), ("flaky", flaky))))

    assert (steady.attempts, flaky.attempts) == ([1], [1, 2])
    assert len(delays) == 1
    (retried,) = lines(logs, "retried")
    assert retried["handlers"] == ["flaky"]
    (handled,) = lines(logs, "handled")
    assert (handled["handlers"], handled["attempts"]) == (("steady", "flaky"), 2)
    assert rig.tally.routed == {("complete", "steady"): 1, ("complete", "flaky"): 1}


async def test_skipped_is_its_own_outcome_not_retried_nor_dead_lettered(
    http: httpx.AsyncClient, logs: Logs
) -> None:
    """Skipped finishes the message at once: outcome ``skipped`` with the reason, counted."""
    rig = Rig(http)
    short = Scripted(Skipped("shorter than 2 s"))
    delays = await rig.deliver(job((("short", short),)))

    assert (short.attempts, delays, rig.dead_letters.calls) == ([1], [], 0)
    (skipped,) = [line for line in logs if line["event"] == "message"]
    assert (skipped["outcome"], skipped["log_level"]) == ("skipped", "info")
    assert skipped["skipped"] == {"short": "shorter than 2 s"}
    assert rig.tally.outcomes == {"skipped": 1}
    assert rig.tally.messages == {("skipped", "complete", "recordingAvailable"): 1}
    assert (rig.tally.skipped_by, rig.tally.routed, rig.tally.retries) == ({"short": 1}, {}, {})
    durations = rig.durations.family().samples
    assert {(d.labels["handler"], d.labels["result"]) for d in durations} == {("short", "skipped")}


async def test_a_skip_beside_a_retried_handler_is_kept_and_the_message_is_handled(
    http: httpx.AsyncClient, logs: Logs, capsys: pytest.CaptureFixture[str]
) -> None:
    """One handler skips, another fails once: only the failed one reruns; outcome handled.
    The run summary counts the skip under its handler."""
    rig = Rig(http)
    skipper, flaky = Scripted(Skipped("not mine")), Scripted(RuntimeError("blip"))
    delays = await rig.deliver(job((("skipper", skipper), ("flaky", flaky))))

    assert (skipper.attempts, flaky.attempts, len(delays)) == ([1], [1, 2], 1)
    (handled,) = lines(logs, "handled")
    assert handled["skipped"] == {"skipper": "not mine"}
    assert rig.tally.outcomes == {"retried": 1, "handled": 1}
    assert rig.tally.skipped_by == {"skipper": 1}
    assert rig.dead_letters.published == []
    print_summary(rig)  # type: ignore[arg-type]  # the summary reads only the tally
    assert capsys.readouterr().err.splitlines()[1:] == [
        "Routed (status -> handler: events):",
        "  complete     -> flaky: 1",
        "Skipped on purpose (handler: events):",
        "  skipper: 1",
        "Outcomes: handled 1, retried 1",
    ]


async def test_the_most_patient_retry_delay_holds_every_failing_handler(
    http: httpx.AsyncClient,
) -> None:
    """Two handlers failing together retry together, after the longer of their delays."""
    rig = Rig(http)
    short, long = Scripted(RetryLater(delay=0.001)), Scripted(RetryLater(delay=0.03))
    delays = await rig.deliver(job((("short", short), ("long", long))))

    assert delays == [0.03]
    assert (short.attempts, long.attempts) == ([1, 2], [1, 2])


async def test_one_handler_given_up_while_another_retries_dead_letters_after_the_retries(
    http: httpx.AsyncClient,
) -> None:
    """One handler gives up while another retries: after the retries, a dead letter names it."""
    rig = Rig(http)
    refused, flaky = Scripted(PermanentFailure("gone")), Scripted(RuntimeError("blip"))
    delays = await rig.deliver(job((("refused", refused), ("flaky", flaky))))

    assert (refused.attempts, flaky.attempts) == ([1], [1, 2])
    assert len(delays) == 1
    (failure,) = rig.failures
    assert (failure.handler, failure.error_class, failure.message) == (
        "refused",
        "PermanentFailure",
        "gone",
    )


async def test_handler_timeout_counts_as_a_failure_and_is_retried(
    http: httpx.AsyncClient, logs: Logs
) -> None:
    """A per-handler timeout cuts a hung attempt short; the retry runs and succeeds."""
    rig = Rig(http, handlers={"slow": RetryOverride(timeout=0.01)})
    slow = Hangs(1)
    delays = await rig.deliver(job((("slow", slow),)))

    assert slow.attempts == [1, 2]
    assert len(delays) == 1
    (retried,) = lines(logs, "retried")
    assert retried["error"] == "TimeoutError"
    assert rig.tally.outcomes == {"retried": 1, "handled": 1}


async def test_policy_timeout_on_every_attempt_ends_in_a_dead_letter(
    http: httpx.AsyncClient,
) -> None:
    """The default policy's timeout applies to every handler; timing out each time gives up."""
    rig = Rig(http, max_attempts=2, timeout=0.01)
    stuck = Hangs(1, 2)
    await rig.deliver(job((("stuck", stuck),)))

    assert stuck.attempts == [1, 2]
    (failure,) = rig.failures
    assert (failure.handler, failure.error_class, failure.attempts) == ("stuck", "TimeoutError", 2)


@pytest.mark.parametrize("limit", [None, 5.0], ids=["no-timeout", "timeout"])
async def test_handler_raising_cancelled_error_on_its_own_is_a_failure_not_fatal(
    http: httpx.AsyncClient, logs: Logs, limit: float | None
) -> None:
    """A stray CancelledError from a handler is retried like any failure; nothing is cancelled."""
    rig = Rig(http, timeout=limit)
    stray = Scripted(asyncio.CancelledError())
    delays = await rig.deliver(job((("stray", stray),)))

    assert stray.attempts == [1, 2]
    assert len(delays) == 1
    (retried,) = lines(logs, "retried")
    assert retried["error"] == "CancelledError"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_cancelling_an_attempt_from_outside_propagates_and_records_nothing(
    http: httpx.AsyncClient,
) -> None:
    """The engine cancelling a running attempt (shutdown, revocation) is no handler failure."""
    rig = Rig(http)
    hung = Hangs(1)
    work = job((("hung", hung),))
    attempt = asyncio.create_task(rig.delivery.attempt(work))
    async with asyncio.timeout(5):
        await hung.started.wait()
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt

    assert work.retry is None
    assert rig.dead_letters.calls == 0
    assert rig.tally.outcomes == {}


async def test_undecodable_goes_straight_to_the_dead_letter_with_no_handler(
    http: httpx.AsyncClient, logs: Logs
) -> None:
    """An undecodable message is dead-lettered at once, with handler None and the decode path."""
    rig = Rig(http)
    record = Record("recordings", 0, 7, None, (), 1_700_000_000_000)
    work = Undecodable(record, b'{"channels": "two"}', DecodeError("expected int", "$.channels"))
    work.started = time.perf_counter()
    delays = await rig.deliver(work)

    assert delays == []
    ((dead_record, value, failure),) = rig.dead_letters.published
    assert (dead_record, value) == (record, b'{"channels": "two"}')
    assert failure.handler is None
    assert (failure.error_class, failure.message, failure.path) == (
        "DecodeError",
        "expected int",
        "$.channels",
    )
    assert failure.attempts == 1
    (line,) = lines(logs, "undecodable")
    assert (line["error"], line["path"], line["offset"]) == ("expected int", "$.channels", 7)
    assert rig.tally.dead_letters == {"undecodable": 1}


@pytest.mark.parametrize("padding", [0, KEPT_WHOLE], ids=["short", "digested"])
async def test_byte_identical_repeat_is_a_duplicate_and_one_byte_off_is_not(
    http: httpx.AsyncClient, padding: int
) -> None:
    """Within the window a byte-identical repeat is dropped unhandled; a one-byte change runs."""
    rig = Rig(http, dedupe_window=10)
    handler = Scripted()
    url = "https://media/" + "x" * padding
    route: Route = (("h", handler),)
    await rig.deliver(job(route, offset=0, media_url=url + "a"))
    await rig.deliver(job(route, offset=1, media_url=url + "a"))
    await rig.deliver(job(route, offset=2, media_url=url + "b"))

    assert handler.attempts == [1, 1]
    assert rig.tally.outcomes == {"handled": 2, "duplicate": 1}


async def test_dedupe_window_zero_means_no_dedupe(http: httpx.AsyncClient) -> None:
    """With a window of 0 every repeat runs its handlers."""
    rig = Rig(http, dedupe_window=0)
    handler = Scripted()
    for offset in range(3):
        await rig.deliver(job((("h", handler),), offset=offset))

    assert handler.attempts == [1, 1, 1]
    assert rig.tally.outcomes == {"handled": 3}


async def test_a_dead_lettered_message_is_not_remembered_as_handled(
    http: httpx.AsyncClient,
) -> None:
    """A repeat of a message that was dead-lettered runs again: only successes are remembered."""
    rig = Rig(http, dedupe_window=10)
    handler = Scripted(PermanentFailure("not yet"))
    await rig.deliver(job((("h", handler),), offset=0))
    await rig.deliver(job((("h", handler),), offset=1))

    assert handler.attempts == [1, 1]
    assert rig.tally.outcomes == {"dead_lettered": 1, "handled": 1}


async def test_a_failing_dead_letter_publish_raises_and_the_next_attempt_only_publishes(
    http: httpx.AsyncClient, logs: Logs
) -> None:
    """A publish error propagates; the scheduler's next attempt only publishes, once."""
    rig = Rig(http, DeadLetterBox(failures=1), max_attempts=2)
    doomed = Scripted(RuntimeError("no 1"), RuntimeError("no 2"))
    work = job((("doomed", doomed),))
    assert await rig.delivery.attempt(work) is not None
    with pytest.raises(ConnectionError):
        await rig.delivery.attempt(work)
    assert await rig.delivery.attempt(work) is None

    assert doomed.attempts == [1, 2]
    assert rig.dead_letters.calls == 2
    (failure,) = rig.failures
    assert (failure.handler, failure.attempts, failure.message) == ("doomed", 2, "no 2")
    assert len(lines(logs, "dead_lettered")) == 1
    assert rig.tally.dead_letters == {"handler_failed": 1}


async def test_a_failing_dead_letter_publish_of_an_undecodable_is_retried_whole(
    http: httpx.AsyncClient,
) -> None:
    """An undecodable message whose dead letter failed is dead-lettered on the next attempt."""
    rig = Rig(http, DeadLetterBox(failures=1))
    record = Record("recordings", 0, 3, None, (), 0)
    work = Undecodable(record, b"not json", DecodeError("not JSON"))
    with pytest.raises(ConnectionError):
        await rig.delivery.attempt(work)
    assert await rig.delivery.attempt(work) is None

    (failure,) = rig.failures
    assert (failure.handler, failure.error_class, failure.path) == (None, "DecodeError", None)
    assert rig.tally.outcomes == {"undecodable": 1}


async def test_scheduler_and_delivery_retry_on_timers_and_commit_only_when_all_finished(
    http: httpx.AsyncClient,
) -> None:
    """Both seams: retries on the scheduler's timers, one dead letter, commit point at the end."""
    rig = Rig(http)
    flaky = Scripted(RuntimeError("blip"), RuntimeError("blip"))
    doomed = Scripted(*(RuntimeError("no") for _ in range(3)))
    steady = Scripted()
    offsets = FinishedOffsets()
    tp = TopicPartition("recordings", 0)
    works = [job((("flaky", flaky),), 0), job((("doomed", doomed),), 1), job((("ok", steady),), 2)]
    for index, work in enumerate(works):
        work.key = index  # three recordings: three lanes
    batch = offsets.tracker.add(tp, [0, 1, 2])
    for index, work in enumerate(works):
        work.batch, work.index = batch, index
    scheduler = Scheduler(offsets, runners=2)
    async with asyncio.TaskGroup() as tg:
        runners = [tg.create_task(scheduler.runner(rig.delivery, n)) for n in range(2)]
        scheduler.submit(tp, works)
        async with asyncio.timeout(5):
            await offsets.drained.wait()
        for runner in runners:
            runner.cancel()

    assert (flaky.attempts, doomed.attempts, steady.attempts) == ([1, 2, 3], [1, 2, 3], [1])
    assert [(f.handler, f.attempts) for f in rig.failures] == [("doomed", 3)]
    assert offsets.tracker.uncommitted() == {tp: 3}
