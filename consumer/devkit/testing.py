"""The plugin author's kit: realistic events, a one-call handler runner, a real-broker round trip.

    event = make_event(status="partial")            # snake_case attribute names
    run = await run_handler(MyHandler(), event)
    assert run.error is None and run.messages == ["did it"]

`run_handler` builds a `Context` like the engine's (its logger binds the handler's class name,
or `name`, where the engine binds the registered name), with a logger that records its lines
and a `publish` that records what was sent. It returns the handler's exception instead of
raising it, so a test can check the error together with what was logged and published.

`kafka_round_trip` runs the real worker over a real broker and returns a `RoundTripResult`:
outcome counts by `Outcome` name, the dead letters published, and the log lines.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

import httpx
import msgspec
import structlog
import structlog.testing
from structlog.testing import LogCapture

from consumer.cloudevents import CloudEvent
from consumer.deadletters import headers as dl
from consumer.deadletters.headers import dlq_fields
from consumer.deadletters.publisher import dead_letter_topic
from consumer.engine.worker import Worker
from consumer.errors import Skipped
from consumer.events import (
    ConferenceRecordingAvailable,
    RecordingAvailable,
    RecordingEvent,
    encode_event,
)
from consumer.handler_api import Context, Handler, Publish, Record, running
from consumer.http import shared_client
from consumer.kafka import connection
from consumer.kafka.clients import build_producer
from consumer.kafka.topic_reader import read_all
from consumer.kafka.topics import admin_client, create_topic, end_offsets
from consumer.observability.observers import Observers
from consumer.outcomes import OUTCOMES, Outcome
from consumer.settings.config import (
    EngineSettings,
    KafkaSettings,
    RetryPolicy,
    RetrySettings,
    Settings,
)

__all__ = [
    "DeadLetter",
    "HandlerRun",
    "Published",
    "RoundTrip",
    "RoundTripResult",
    "kafka_round_trip",
    "make_conference_event",
    "make_event",
    "run_handler",
    "running",
]

ACCOUNT_ID: Final = "9900000"
API: Final = "https://voice.bandwidth.com/api/v2"
_WHEN: Final = datetime(2026, 11, 27, 10, 15, 30, 123000, tzinfo=UTC)


def make_event(**overrides: Any) -> RecordingAvailable:
    """A fully populated ``recordingAvailable`` (status ``complete``), with `overrides` applied.

    Overrides use the attribute names (``recording_id``, ``media_url``, ``from_``). ``call_url``
    and ``media_url`` follow the account, call and recording ids unless overridden themselves.
    """
    account = overrides.get("account_id", ACCOUNT_ID)
    call = overrides.get("call_id", "c-15ac29a2-1331029c-2cb0-4a07-b215-b22865662d85")
    recording = overrides.get("recording_id", "r-fbe05094-9fd2afe9-bf5b-4c68-820a-41a01c1c5833")
    call_url = f"{API}/accounts/{account}/calls/{call}"
    defaults: dict[str, Any] = {
        "event_time": _WHEN,
        "account_id": account,
        "application_id": "7fc9698a-b04a-468b-9e8f-91238c0d0086",
        "from_": "+15551112222",
        "to": "+15553334444",
        "direction": "inbound",
        "call_id": call,
        "call_url": call_url,
        "recording_id": recording,
        "media_url": f"{call_url}/recordings/{recording}/media",
        "start_time": _WHEN - timedelta(seconds=80),
        "end_time": _WHEN - timedelta(seconds=9.546),
        "duration": timedelta(seconds=70.454),
        "file_format": "wav",
        "channels": 1,
        "tag": "kit",
        "status": "complete",
    }
    return RecordingAvailable(**(defaults | overrides))


def make_conference_event(**overrides: Any) -> ConferenceRecordingAvailable:
    """A fully populated ``conferenceRecordingAvailable``; overrides as in `make_event`."""
    account = overrides.get("account_id", ACCOUNT_ID)
    conference = overrides.get(
        "conference_id", "conf-fe23a767-a75a5b77-20c5-4cca-b581-cbbf0776eca9"
    )
    recording = overrides.get("recording_id", "r-fbe05094-9fd2afe9-bf5b-4c68-820a-41a01c1c5833")
    defaults: dict[str, Any] = {
        "event_time": _WHEN,
        "account_id": account,
        "conference_id": conference,
        "name": "weekly-sync",
        "recording_id": recording,
        "channels": 1,
        "start_time": _WHEN - timedelta(seconds=80),
        "end_time": _WHEN - timedelta(seconds=9.546),
        "duration": timedelta(seconds=70.454),
        "file_format": "wav",
        "media_url": f"{API}/accounts/{account}/conferences/{conference}"
        f"/recordings/{recording}/media",
        "tag": "kit",
        "status": "complete",
    }
    return ConferenceRecordingAvailable(**(defaults | overrides))


@dataclass(frozen=True, slots=True)
class Published:
    """One message a handler sent through ``ctx.publish``."""

    topic: str
    value: bytes
    key: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class HandlerRun:
    """What one `run_handler` call saw."""

    logs: list[dict[str, Any]]
    """Every log line as a dict: ``event`` (the message), ``log_level`` and the bound fields."""
    published: list[Published]
    error: Exception | None
    """What ``handle`` raised (RetryLater, PermanentFailure, Skipped, anything), or None."""
    context: Context = field(repr=False)

    @property
    def messages(self) -> list[str]:
        """Just the log messages, in order."""
        return [entry["event"] for entry in self.logs]

    @property
    def skipped(self) -> str | None:
        """The reason when ``handle`` raised `Skipped` (passed the event over), else None."""
        return self.error.reason if isinstance(self.error, Skipped) else None


async def run_handler(
    handler: Handler,
    event: RecordingEvent,
    *,
    http: httpx.AsyncClient | None = None,
    attempt: int = 1,
    record: Record | None = None,
    value: bytes | None = None,
    publish: Publish | None = None,
    lifecycle: bool = True,
    name: str | None = None,
    envelope: CloudEvent | None = None,
) -> HandlerRun:
    """Run ``handler.handle(event, ctx)`` once with a real Context; never raises what it raised.

    `http` defaults to a fresh client like the worker's, closed afterwards; `value` (the message
    bytes) to `encode_event(event)`; `record` to offset 0 of ``recordings`` keyed by recording id.
    Publishes are recorded, and also forwarded to `publish` when given (a real producer).
    With `lifecycle` the handler is started before and closed after; pass False for a handler
    that is already running (see `running`), e.g. to send many events through one instance.
    Exceptions from ``start()`` and ``close()`` propagate: they are not the message's outcome.
    `name` is the handler's registered name: ``ctx.log`` binds it (default: the class name),
    and an `OptionError` from ``start()`` becomes a ConfigError keyed with it, as in the worker.
    `envelope` is the CloudEvent the handler sees as ``ctx.envelope``.
    """
    capture = LogCapture()
    published: list[Published] = []
    record = record or Record(
        topic="recordings",
        partition=0,
        offset=0,
        key=event.ordering_key.encode() if event.ordering_key else None,
        headers=(),
        timestamp=int(time.time() * 1000),
    )

    async def record_publish(
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> None:
        published.append(Published(topic, value, key, tuple(headers)))
        if publish is not None:
            await publish(topic, value, key=key, headers=headers)

    log = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    ).bind(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        handler=name or type(handler).__name__,
        **event.summary(),
        **(envelope.log_fields() if envelope is not None else {}),
    )
    async with AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(shared_client())
        if lifecycle:
            await stack.enter_async_context(running(handler, name))
        ctx = Context(
            log=log,
            record=record,
            attempt=attempt,
            http=http,
            publish=record_publish,
            value=encode_event(event) if value is None else value,
            envelope=envelope,
        )
        error: Exception | None = None
        try:
            await handler.handle(event, ctx)
        except Exception as exc:
            error = exc
    return HandlerRun([dict(entry) for entry in capture.entries], published, error, ctx)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message the round trip's worker published to the dead-letter topic."""

    value: bytes | None
    """The original message value, as it arrived."""
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    """The original headers, then the ``dlq.*`` ones saying what failed."""

    @property
    def reasons(self) -> dict[str, str]:
        """The ``dlq.*`` headers by name (``dlq.handler``, ``dlq.error.class``, ...)."""
        return dlq_fields(self.headers)

    @property
    def handler(self) -> str | None:
        """The handler that gave up; None when the message could not be decoded."""
        return self.reasons.get(dl.HANDLER)

    @property
    def error_class(self) -> str:
        return self.reasons.get(dl.ERROR_CLASS, "")

    @property
    def error_message(self) -> str:
        return self.reasons.get(dl.ERROR_MESSAGE, "")


@dataclass(frozen=True, slots=True)
class RoundTripResult:
    """What a `kafka_round_trip` did: outcomes, dead letters and log lines."""

    topic: str
    """The topic the events were produced to (and the worker's group id)."""
    outcomes: Mapping[Outcome, int]
    """Messages per outcome, every outcome name present (0 when none); see `Outcome`."""
    dead_letters: list[DeadLetter]
    """Everything on the dead-letter topic after the run, oldest first."""
    logs: list[dict[str, Any]] = field(repr=False)
    """Every log line of the run as a dict: ``event`` (the message), ``log_level``, fields."""
    skipped_by: Mapping[str, int] = field(default_factory=dict)
    """Handler name -> events it passed over on purpose (raised `Skipped`)."""

    @property
    def messages(self) -> list[str]:
        """Just the log messages, in order."""
        return [entry["event"] for entry in self.logs]


class RoundTrip(Protocol):
    """`kafka_round_trip` with its broker already chosen (the ``handler_round_trip`` fixture)."""

    async def __call__(
        self,
        handlers: Mapping[str, Handler],
        events: Iterable[RecordingEvent | tuple[bytes | None, bytes]],
        *,
        topic: str | None = None,
        routes: Mapping[str, list[str]] | None = None,
        retry: RetryPolicy | None = None,
    ) -> RoundTripResult: ...


async def kafka_round_trip(
    bootstrap: str | KafkaSettings,
    handlers: Mapping[str, Handler],
    events: Iterable[RecordingEvent | tuple[bytes | None, bytes]],
    *,
    topic: str | None = None,
    routes: Mapping[str, list[str]] | None = None,
    retry: RetryPolicy | None = None,
) -> RoundTripResult:
    """Produce `events` to a fresh topic and run the project's Worker until it committed them.

    `bootstrap` is an address, or KafkaSettings for a secured cluster (its topic and group are
    replaced by the fresh topic).

    Events are sent as `encode_event` JSON keyed by recording id; ``(key, value)`` pairs as they
    are. `routes` defaults to every status going to every handler, in the given order. `retry`
    is every handler's policy (default: the worker's, ``RetryPolicy()``); a test of failures
    wants short delays, ``RetryPolicy(max_attempts=2, initial_delay=0.01)``. Handlers are
    started and closed by the worker, as in production. Bound it with ``asyncio.timeout``.
    """
    topic = topic or f"kit-{uuid.uuid4().hex[:12]}"
    if isinstance(bootstrap, str):
        bootstrap = KafkaSettings(bootstrap_servers=bootstrap)
    kafka = msgspec.structs.replace(bootstrap, topic=topic, group_id=topic)
    policy = msgspec.structs.asdict(retry or RetryPolicy())
    settings = Settings(
        kafka=kafka,
        engine=EngineSettings(commit_interval=0.2),
        retry=RetrySettings(**policy),
        routes=dict(routes or {"default": list(handlers)}),
    )
    messages = [
        item
        if isinstance(item, tuple)
        else ((item.ordering_key or "").encode() or None, encode_event(item))
        for item in events
    ]
    async with admin_client(kafka) as admin:
        await create_topic(admin, topic, partitions=1)
    await _produce(kafka, messages)
    # Everything produced is finished (handled, skipped or dead-lettered) once committed.
    end = await end_offsets(kafka, topic)
    with structlog.testing.capture_logs() as logs:
        worker = Worker(settings, handlers, Observers(settings))
        run = asyncio.create_task(worker.run())
        committed = asyncio.create_task(worker.wait_committed(end))
        await asyncio.wait({run, committed}, return_when=asyncio.FIRST_COMPLETED)
        committed.cancel()
        worker.stop()
        await run
    records = await read_all(kafka, dead_letter_topic(settings))
    return RoundTripResult(
        topic=topic,
        outcomes={name: worker.tally.outcomes[name] for name in OUTCOMES},
        dead_letters=[DeadLetter(r.value, r.key, tuple(r.headers)) for r in records],
        logs=[dict(entry) for entry in logs],
        skipped_by=dict(worker.tally.skipped_by),
    )


async def _produce(kafka: KafkaSettings, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
    """Send every (key, value) to ``kafka.topic`` and wait until the broker acknowledged all."""
    producer = build_producer(kafka, linger_ms=5)
    await connection.start(producer, kafka)
    try:
        sent = [await producer.send(kafka.topic, value, key=key) for key, value in messages]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
