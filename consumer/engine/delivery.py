"""One message's journey through its handlers: attempts, retries, dead letters, outcome lines.

The first attempt of a job whose handlers all succeed is the hot path: it allocates no retry
state, and a handler that finishes without suspending costs no task switch (the scheduler's
task awaits it directly).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from consumer.deadletters.headers import Failure
from consumer.engine.dedupe import RecentlyHandled, fingerprint
from consumer.engine.intake import Job, Undecodable
from consumer.engine.retry import retry_delay
from consumer.engine.tally import Tally
from consumer.errors import Skipped
from consumer.handler_api import Context, Handler, Publish, Record
from consumer.outcomes import Outcome
from consumer.redaction import error_line
from consumer.settings.config import RetrySettings

if TYPE_CHECKING:
    import httpx

    from consumer.engine.observers import Tracer

Route = tuple[tuple[str, Handler], ...]


class DeadLetters(Protocol):
    """Where messages go that are given up on: `DeadLetterPublisher`, or a stand-in in tests."""

    async def publish(self, record: Record, value: bytes | None, failure: Failure) -> None: ...


@dataclass(slots=True)
class RetryState:
    """A job's attempts and failures, made when one of its handlers first fails."""

    pending: Route = ()
    """Handlers that have not succeeded yet; a retry re-runs only these."""
    attempts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, BaseException] = field(default_factory=dict)
    given_up: list[str] = field(default_factory=list)
    delays: dict[str, float] = field(default_factory=dict)
    """Seconds each retrying handler asked to wait before its next attempt."""
    skipped: dict[str, str] | None = None
    """Handlers that raised Skipped, with their reasons, for the message's outcome line."""
    first_failure: float | None = None
    last_failure: float | None = None
    span: Any = None
    """The message's tracing span between attempts, while tracing is on (the tracer's)."""

    def failed(self, name: str, error: BaseException) -> None:
        now = time.time()
        self.first_failure = self.first_failure or now
        self.last_failure = now
        self.failures[name] = error

    @property
    def most_attempts(self) -> int:
        return max(self.attempts.values(), default=1)


class Delivery:
    """Runs a job's handlers once per call; the scheduler runs the retries it asks for."""

    attempt: Callable[[Job[Handler] | Undecodable], Coroutine[Any, Any, float | None]]
    """Run what is pending; returns the seconds until a retry is due, or None when finished.
    In the tracer's span while tracing is on, else the untraced attempt itself."""

    def __init__(
        self,
        retry: RetrySettings,
        dead_letters: DeadLetters,
        recent: RecentlyHandled,
        http: httpx.AsyncClient,
        publish: Publish,
        tally: Tally,
        tracer: Tracer | None = None,
    ) -> None:
        if tracer is not None:
            dead_letters, publish = tracer.dead_letters(dead_letters), tracer.publish(publish)
        self._policies = {name: retry.policy_for(name) for name in retry.handlers}
        self._default_policy = retry.policy_for("")
        self._timeouts = {name: policy.timeout for name, policy in self._policies.items()}
        self._default_timeout = self._default_policy.timeout
        self._dead_letters = dead_letters
        self._recent = recent if recent.size > 0 else None
        self._http = http
        self._publish = publish
        # Resolved once: a lazy proxy would rebuild the logger on every call. The outcome
        # line's fields are only gathered for levels that are on.
        self._log = structlog.get_logger("consumer.delivery").bind()
        self._writers = {
            level: getattr(self._log, level)
            for level in ("debug", "info", "warning", "error")
            if self._log.is_enabled_for(logging.getLevelNamesMapping()[level.upper()])
        }
        self._tracer = tracer
        if tracer is None:
            self.attempt = self._attempt
        else:
            self._writers = {level: tracer.writer(write) for level, write in self._writers.items()}
            self.attempt = partial(tracer.attempt, run=self._attempt)
        self._handled_line = self._writers.get("info")
        self._tally = tally

    async def _attempt(self, work: Job[Handler] | Undecodable) -> float | None:
        if type(work) is Undecodable:
            error = work.error
            await self._dead_letter(work, None, error, 1)
            self.outcome("error", "undecodable", work, error=error.reason, path=error.path)
            return None
        job = work
        event = job.event
        retry = job.retry
        recent = self._recent
        repeat = None
        if recent is not None and event.recording_id is not None:
            repeat = fingerprint(job.value or b"")
            if retry is None and repeat in recent:
                self.outcome("debug", "duplicate", job)
                return None
        # Inline, not a coroutine of its own: one coroutine fewer per message.
        failing: list[tuple[str, Handler]] = []
        skipped = None if retry is None else retry.skipped
        durations = self._tally.durations
        for name, handler in job.route if retry is None else retry.pending:
            if retry is None:
                attempt = 1
            else:
                retry.attempts[name] = attempt = retry.attempts.get(name, 0) + 1
            ctx = Context(
                self._log,
                job.record,
                job.value or b"",
                attempt,
                self._http,
                self._publish,
                partial(_handler_fields, job, name),
                job.envelope,
            )
            timeout = self._timeouts.get(name, self._default_timeout)
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
                retry = self._failed(job, name, exc, time.perf_counter() - started)
                failing.append((name, handler))
            except Skipped as exc:
                durations.observe(name, "skipped", time.perf_counter() - started)
                if retry is not None:
                    retry.failures.pop(name, None)
                if skipped is None:
                    skipped = {}
                skipped[name] = exc.reason
                self._tally.skipped_by[name] += 1
            except Exception as exc:
                retry = self._failed(job, name, exc, time.perf_counter() - started)
                failing.append((name, handler))
            else:
                durations.observe(name, "ok", time.perf_counter() - started)
                if retry is not None:
                    retry.failures.pop(name, None)
                self._tally.handled_by(event.status, name)
        if retry is not None:
            retry.skipped = skipped
            retry.pending = tuple(failing)
            if retry.pending or retry.given_up:
                return await self._after_failures(job, retry)
        if recent is not None and repeat is not None:
            recent.add(repeat)
        outcome: Outcome = "handled" if job.route else "unrouted"
        if skipped is not None and len(skipped) == len(job.route):
            outcome = "skipped"
        if self._handled_line is not None:  # the common case: gather the fields only if seen
            # `outcome()` spelt out for the commonest line: one dict, one keyword expansion.
            line = _fields(job)
            line["outcome"] = outcome
            line["duration_ms"] = round((time.perf_counter() - job.started) * 1000, 3)
            line["handlers"] = tuple([name for name, _ in job.route])
            line["attempts"] = 1 if retry is None else retry.most_attempts
            if skipped is not None:
                line["skipped"] = skipped
            self._handled_line("message", **line)
        self._tally.finished(outcome, event.status, event.event_type)
        return None

    def _failed(
        self, job: Job[Handler], name: str, error: BaseException, took: float
    ) -> RetryState:
        retry = job.retry
        if retry is None:  # the first failure of this job: its attempt is the first
            retry = job.retry = RetryState(attempts={name: 1})
        retry.failed(name, error)
        policy = self._policies.get(name, self._default_policy)
        delay = retry_delay(policy, retry.attempts[name], error)
        tally = self._tally
        if delay is None:
            retry.given_up.append(name)
            tally.durations.observe(name, "failed", took)
        else:
            tally.durations.observe(name, "retry", took)
            tally.retries[name] += 1
            retry.delays[name] = delay
        return retry

    async def _after_failures(self, job: Job[Handler], retry: RetryState) -> float | None:
        """Schedule the retry of handlers with attempts left, else dead-letter the message."""
        retrying = tuple((n, h) for n, h in retry.pending if n not in retry.given_up)
        retry.pending = retrying
        if retrying:
            failed = sorted(name for name, _ in retrying)
            # Every retrying handler waits at least as long as the most patient one asked.
            delay = max(retry.delays[name] for name in failed)
            self.outcome(
                "warning",
                "retried",
                job,
                handlers=failed,
                attempts=retry.most_attempts,
                delay=round(delay, 3),
                error=error_line(retry.failures[failed[0]]),
            )
            return delay
        first = retry.failures[retry.given_up[0]]
        await self._dead_letter(job, ",".join(retry.given_up), first, retry.most_attempts)
        self.outcome(
            "error",
            "dead_lettered",
            job,
            handlers=retry.given_up,
            attempts=retry.most_attempts,
            error=error_line(first),
        )
        return None

    async def _dead_letter(
        self,
        work: Job[Handler] | Undecodable,
        handler: str | None,
        error: BaseException,
        attempts: int,
    ) -> None:
        retry = work.retry
        failure = Failure.from_exception(
            error,
            handler=handler,
            attempts=attempts,
            first_failure=None if retry is None else retry.first_failure,
            last_failure=None if retry is None else retry.last_failure,
        )
        await self._dead_letters.publish(work.record, work.value, failure)
        self._tally.dead_letters["undecodable" if handler is None else "handler_failed"] += 1

    def outcome(
        self, level: str, outcome: Outcome, work: Job[Handler] | Undecodable, **fields: Any
    ) -> None:
        """The one canonical line for a message's outcome (or for a retry being scheduled)."""
        if type(work) is Undecodable:
            self._tally.finished(outcome, None, None)
        else:
            event = work.event
            self._tally.finished(outcome, event.status, event.event_type)
        write = self._writers.get(level)
        if write is not None:
            line = _fields(work)
            line["outcome"] = outcome
            line["duration_ms"] = round((time.perf_counter() - work.started) * 1000, 3)
            write("message", **line, **fields)
        if self._tracer is not None:
            self._tracer.outcome(outcome, work, fields)


def _fields(work: Job[Handler] | Undecodable) -> dict[str, Any]:
    """What every line about a message carries: where it came from and what it is."""
    record = work.record
    line = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
    if type(work) is Undecodable:
        return line
    line.update(work.event.summary())
    if work.envelope is not None:
        line.update(work.envelope.log_fields())
    return line


def _handler_fields(job: Job[Handler], handler: str) -> dict[str, Any]:
    return _fields(job) | {"handler": handler}
