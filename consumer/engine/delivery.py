"""One message's journey through its handlers: attempts, retries, dead letters, outcome lines."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from consumer.cloudevents import CloudEvent
from consumer.config import RetrySettings
from consumer.engine.deadletter_headers import Failure
from consumer.engine.deadletter_publisher import DeadLetterPublisher
from consumer.engine.dedupe import RecentlyHandled, fingerprint
from consumer.engine.retry import retry_delay
from consumer.errors import DecodeError
from consumer.events import RecordingEvent
from consumer.interface import Context, Handler, Publish, Record
from consumer.observability.metrics import MAX_RAW_SERIES, Durations, message_labels
from consumer.outcomes import Outcome

if TYPE_CHECKING:
    import httpx


@dataclass(slots=True)
class Tally:
    """What a worker did, for its end-of-run summary and for tests."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    routed: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(status, handler) -> events that handler finished."""
    messages: dict[tuple[str, str | None, str | None], int] = field(default_factory=dict)
    """(outcome, status, event type) -> messages, for the metrics, which fold the values."""
    retries: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    """Reason (undecodable, handler_failed) -> messages dead-lettered."""
    durations: Durations = field(default_factory=Durations)
    commits: int = 0
    commit_failures: int = 0
    rebalances: int = 0

    def finished(self, outcome: Outcome, status: str | None, event_type: str | None) -> None:
        self.outcomes[outcome] += 1
        if outcome == "retried":
            return
        # Counted as they come (the hot path); folded into label values only when scraped.
        messages = self.messages
        key: tuple[str, str | None, str | None] = (outcome, status, event_type)
        count = messages.get(key)
        if count is None and len(messages) >= MAX_RAW_SERIES:
            key = message_labels(*key)  # odd values keep coming: fold now, stay bounded
            count = messages.get(key)
        messages[key] = 1 if count is None else count + 1


@dataclass(slots=True, eq=False)
class Job:
    """A fetched message on its way through the engine."""

    record: Record
    value: bytes | None
    lane: tuple[Any, Hashable]
    """(partition, ordering key): jobs of one lane run one at a time, in offset order."""
    generation: int
    event: RecordingEvent | None = None
    envelope: CloudEvent | None = None
    error: DecodeError | None = None
    route: tuple[tuple[str, Handler], ...] = ()
    pending: list[tuple[str, Handler]] = field(default_factory=list)
    """Handlers that have not succeeded yet; a retry re-runs only these."""
    attempts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, BaseException] = field(default_factory=dict)
    given_up: list[str] = field(default_factory=list)
    first_failure: float | None = None
    last_failure: float | None = None
    started: float = field(default_factory=time.perf_counter)

    def resume(self, earlier: Job) -> None:
        """Carry on the retries of the same message, fetched again after a revocation."""
        still = {name for name, _ in earlier.pending}
        self.pending = [(name, handler) for name, handler in self.route if name in still]
        self.attempts, self.failures = earlier.attempts, earlier.failures
        self.given_up = earlier.given_up
        self.first_failure, self.last_failure = earlier.first_failure, earlier.last_failure


class Delivery:
    """Runs a job's handlers once per call; the engine schedules the retries it asks for."""

    def __init__(
        self,
        retry: RetrySettings,
        dead_letters: DeadLetterPublisher,
        recent: RecentlyHandled,
        http: httpx.AsyncClient,
        publish: Publish,
        tally: Tally,
    ) -> None:
        self._policies = {name: retry.policy_for(name) for name in retry.handlers}
        self._default_policy = retry.policy_for("")
        self._dead_letters = dead_letters
        self._recent = recent
        self._http = http
        self._publish = publish
        # Resolved once: a lazy proxy would rebuild the logger on every call. The outcome
        # line's fields are only gathered for levels that are on.
        self._log = structlog.get_logger("consumer.delivery").bind()
        self._enabled = frozenset(
            level
            for level in ("debug", "info", "warning", "error")
            if self._log.is_enabled_for(logging.getLevelNamesMapping()[level.upper()])
        )
        self._tally = tally

    async def attempt(self, job: Job) -> float | None:
        """Run what is pending; returns the seconds until a retry is due, or None when finished."""
        if job.error is not None:
            await self._dead_letter(job, None, job.error)
            self.outcome("error", "undecodable", job, error=job.error.reason, path=job.error.path)
            return None
        event = job.event
        assert event is not None
        repeat = fingerprint(job.value or b"")
        if not job.attempts and event.recording_id is not None and repeat in self._recent:
            self.outcome("debug", "duplicate", job)
            return None
        failed_after = await self._run_pending(job, event)
        delay = self._schedule(job, failed_after)
        if delay is not None:
            failed = sorted(name for name, _ in job.pending)
            self.outcome(
                "warning",
                "retried",
                job,
                handlers=failed,
                attempts=_max_attempts(job),
                delay=round(delay, 3),
                error=_describe(job.failures[failed[0]]),
            )
            return delay
        if job.given_up:
            first = job.failures[job.given_up[0]]
            await self._dead_letter(job, ",".join(job.given_up), first)
            self.outcome(
                "error",
                "dead_lettered",
                job,
                handlers=job.given_up,
                attempts=_max_attempts(job),
                error=_describe(first),
            )
            return None
        if event.recording_id is not None:
            self._recent.add(repeat)
        outcome: Outcome = "handled" if job.route else "unrouted"
        if "info" in self._enabled:  # the common case: gather the line's fields only if seen
            handlers = tuple(name for name, _ in job.route)
            self.outcome("info", outcome, job, handlers=handlers, attempts=_max_attempts(job))
        else:
            self._tally.finished(outcome, event.status, event.event_type)
        return None

    async def _run_pending(self, job: Job, event: RecordingEvent) -> dict[str, float]:
        """Returns the seconds each failed attempt took."""
        still_failing: list[tuple[str, Handler]] = []
        failed_after: dict[str, float] = {}
        durations = self._tally.durations
        attempts = job.attempts
        for name, handler in job.pending:
            attempts[name] = attempt = attempts.get(name, 0) + 1
            ctx = Context(
                self._log,
                job.record,
                job.value or b"",
                attempt,
                self._http,
                self._publish,
                bind=partial(_handler_fields, job, name),
                envelope=job.envelope,
            )
            timeout = self._policies.get(name, self._default_policy).timeout
            started = time.perf_counter()
            try:
                if timeout is None:
                    await handler.handle(event, ctx)
                else:
                    async with asyncio.timeout(timeout):
                        await handler.handle(event, ctx)
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the engine is cancelling this attempt (shutdown)
                # A handler's own stray cancellation is its failure, not the end of a worker task.
                self._fail(job, name, exc, handler, still_failing)
                failed_after[name] = time.perf_counter() - started
            except Exception as exc:
                self._fail(job, name, exc, handler, still_failing)
                failed_after[name] = time.perf_counter() - started
            else:
                durations.observe(name, "ok", time.perf_counter() - started)
                if job.failures:
                    job.failures.pop(name, None)
                self._tally.routed[(event.status or "(none)", name)] += 1
        job.pending = still_failing
        return failed_after

    @staticmethod
    def _fail(
        job: Job,
        name: str,
        error: BaseException,
        handler: Handler,
        still_failing: list[tuple[str, Handler]],
    ) -> None:
        now = time.time()
        job.first_failure = job.first_failure or now
        job.last_failure = now
        job.failures[name] = error
        still_failing.append((name, handler))

    def _schedule(self, job: Job, failed_after: dict[str, float]) -> float | None:
        """Give up on handlers out of attempts; the delay before the others try again."""
        delays: list[float] = []
        retrying: list[tuple[str, Handler]] = []
        tally = self._tally
        for name, handler in job.pending:
            policy = self._policies.get(name, self._default_policy)
            delay = retry_delay(policy, job.attempts[name], job.failures[name])
            if delay is None:
                job.given_up.append(name)
                tally.durations.observe(name, "failed", failed_after.get(name, 0.0))
            else:
                delays.append(delay)
                retrying.append((name, handler))
                tally.durations.observe(name, "retry", failed_after.get(name, 0.0))
                tally.retries[name] += 1
        job.pending = retrying
        # Every retrying handler waits at least as long as the most patient one asked.
        return max(delays) if delays else None

    async def _dead_letter(self, job: Job, handler: str | None, error: BaseException) -> None:
        failure = Failure.from_exception(
            error,
            handler=handler,
            attempts=_max_attempts(job),
            first_failure=job.first_failure,
            last_failure=job.last_failure,
        )
        await self._dead_letters.publish(job.record, job.value, failure)
        self._tally.dead_letters["undecodable" if handler is None else "handler_failed"] += 1

    def outcome(self, level: str, outcome: Outcome, job: Job, **fields: Any) -> None:
        """The one canonical line for a message's outcome (or for a retry being scheduled)."""
        event = job.event
        if event is None:
            self._tally.finished(outcome, None, None)
        else:
            self._tally.finished(outcome, event.status, event.event_type)
        if level in self._enabled:
            duration_ms = round((time.perf_counter() - job.started) * 1000, 3)
            getattr(self._log, level)(
                "message", **_fields(job), outcome=outcome, duration_ms=duration_ms, **fields
            )


def _fields(job: Job) -> dict[str, Any]:
    """What every line about a message carries: where it came from and what it is."""
    record = job.record
    where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
    if job.event is None:
        return where
    if job.envelope is None:
        return where | job.event.summary()
    return where | job.event.summary() | job.envelope.log_fields()


def _handler_fields(job: Job, handler: str) -> dict[str, Any]:
    return _fields(job) | {"handler": handler}


def _max_attempts(job: Job) -> int:
    return max(job.attempts.values(), default=1)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
