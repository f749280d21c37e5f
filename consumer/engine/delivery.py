"""One message's journey through its handlers: attempts, retries, dead letters, outcome lines."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from consumer.config import RetrySettings
from consumer.engine.deadletter import DeadLetterPublisher, Failure
from consumer.engine.dedupe import RecentlyHandled
from consumer.engine.retry import retry_delay
from consumer.errors import DecodeError
from consumer.events import RecordingEvent
from consumer.handler import Context, Handler, Publish, Record

if TYPE_CHECKING:
    import httpx


@dataclass(slots=True)
class Tally:
    """What a worker did, for its end-of-run summary and for tests."""

    outcomes: Counter[str] = field(default_factory=Counter)
    routed: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(status, handler) -> events that handler finished."""


@dataclass(slots=True, eq=False)
class Job:
    """A fetched message on its way through the engine."""

    record: Record
    value: bytes | None
    lane: tuple[Any, Hashable]
    """(partition, ordering key): jobs of one lane run one at a time, in offset order."""
    generation: int
    event: RecordingEvent | None = None
    error: DecodeError | None = None
    route: tuple[str, ...] = ()
    pending: list[tuple[str, Handler]] = field(default_factory=list)
    """Handlers that have not succeeded yet; a retry re-runs only these."""
    attempts: Counter[str] = field(default_factory=Counter)
    failures: dict[str, BaseException] = field(default_factory=dict)
    given_up: list[str] = field(default_factory=list)
    first_failure: float | None = None
    last_failure: float | None = None
    started: float = field(default_factory=time.perf_counter)


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
        self._retry = retry
        self._policies = {name: retry.policy_for(name) for name in retry.handlers}
        self._default_policy = retry.policy_for("")
        self._dead_letters = dead_letters
        self._recent = recent
        self._http = http
        self._publish = publish
        self._log = structlog.get_logger("consumer.delivery")
        self._tally = tally

    async def attempt(self, job: Job) -> float | None:
        """Run what is pending; returns the seconds until a retry is due, or None when finished."""
        log = self._log.bind(
            topic=job.record.topic, partition=job.record.partition, offset=job.record.offset
        )
        if job.error is not None:
            await self._dead_letter(job, None, job.error)
            self.outcome(
                log, "error", "undecodable", job, error=job.error.reason, path=job.error.path
            )
            return None
        event = job.event
        assert event is not None
        log = log.bind(**event.summary())
        repeat = (event.recording_id, event.event_type, event.status)
        if job.attempts.total() == 0 and event.recording_id is not None and repeat in self._recent:
            self.outcome(log, "debug", "duplicate", job)
            return None
        await self._run_pending(job, event, log)
        delay = self._schedule(job)
        if delay is not None:
            failed = sorted(name for name, _ in job.pending)
            self.outcome(
                log,
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
                log,
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
        outcome = "handled" if job.route else "unrouted"
        self.outcome(log, "info", outcome, job, handlers=job.route, attempts=_max_attempts(job))
        return None

    async def _run_pending(self, job: Job, event: RecordingEvent, log: Any) -> None:
        still_failing: list[tuple[str, Handler]] = []
        for name, handler in job.pending:
            job.attempts[name] += 1
            ctx = Context(
                log=log.bind(handler=name),
                record=job.record,
                value=job.value or b"",
                attempt=job.attempts[name],
                http=self._http,
                publish=self._publish,
            )
            timeout = self._policies.get(name, self._default_policy).timeout
            try:
                async with asyncio.timeout(timeout):
                    await handler.handle(event, ctx)
            except Exception as exc:
                now = time.time()
                job.first_failure = job.first_failure or now
                job.last_failure = now
                job.failures[name] = exc
                still_failing.append((name, handler))
            else:
                job.failures.pop(name, None)
                self._tally.routed[(event.status or "(none)", name)] += 1
        job.pending = still_failing

    def _schedule(self, job: Job) -> float | None:
        """Give up on handlers out of attempts; the delay before the others try again."""
        delays: list[float] = []
        retrying: list[tuple[str, Handler]] = []
        for name, handler in job.pending:
            policy = self._policies.get(name, self._default_policy)
            delay = retry_delay(policy, job.attempts[name], job.failures[name])
            if delay is None:
                job.given_up.append(name)
            else:
                delays.append(delay)
                retrying.append((name, handler))
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

    def outcome(self, log: Any, level: str, outcome: str, job: Job, **fields: Any) -> None:
        """The one canonical line for a message's outcome (or for a retry being scheduled)."""
        self._tally.outcomes[outcome] += 1
        duration_ms = round((time.perf_counter() - job.started) * 1000, 3)
        getattr(log, level)("message", outcome=outcome, duration_ms=duration_ms, **fields)


def _max_attempts(job: Job) -> int:
    return max(job.attempts.values(), default=1)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
