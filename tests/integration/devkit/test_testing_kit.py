"""The plugin author's kit: event factories, the handler runner, the broker round trip."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import msgspec
import pytest

from consumer import OUTCOMES, RetryPolicy, Skipped
from consumer.devkit.testing import (
    RoundTrip,
    kafka_round_trip,
    make_conference_event,
    make_event,
    run_handler,
    running,
)
from consumer.errors import PermanentFailure, RetryLater
from consumer.events import (
    ConferenceRecordingAvailable,
    RecordingAvailable,
    RecordingEvent,
    decode,
    encode_event,
)
from consumer.handler_api import Context
from consumer.handlers.log import LogHandler
from tests._support.kafka_helpers import committed_and_end

OPTIONAL = {"parent_call_id", "enqueued_time", "transfer_caller_id", "transfer_to"}
"""Fields Bandwidth only sends in special cases (transfers, queued calls)."""


def test_make_event_is_fully_populated_and_round_trips() -> None:
    """Every usual field is set, the mediaUrl is the event's own, and JSON decodes back equal."""
    event = make_event()
    empty = {f for f in event.__struct_fields__ if getattr(event, f) in (None, ())}
    assert empty == OPTIONAL | {"malformed_raw"}
    assert event.status == "complete"
    assert event.media_url == (
        f"https://voice.bandwidth.com/api/v2/accounts/{event.account_id}/calls/{event.call_id}"
        f"/recordings/{event.recording_id}/media"
    )
    assert decode(encode_event(event)) == event


def test_make_event_overrides_by_attribute_name() -> None:
    """Overrides use snake_case names; URLs follow changed ids unless overridden themselves."""
    event = make_event(recording_id="r-1", status="partial", from_="+15550000000")
    assert (event.recording_id, event.status, event.from_) == ("r-1", "partial", "+15550000000")
    assert event.media_url is not None
    assert event.media_url.endswith("/recordings/r-1/media")
    assert make_event(media_url=None, status="deleted").media_url is None
    with pytest.raises(TypeError):
        make_event(recordingId="r-1")


def test_make_conference_event() -> None:
    """A conference event is complete too, with its conference media path."""
    event = make_conference_event(conference_id="conf-1")
    assert isinstance(event, ConferenceRecordingAvailable)
    assert event.media_url is not None
    assert "/conferences/conf-1/recordings/" in event.media_url
    assert decode(encode_event(event)) == event


async def test_run_handler_captures_logs_with_bound_fields() -> None:
    """Log lines come back as dicts carrying the fields the engine binds."""
    run = await run_handler(LogHandler(), make_event(recording_id="r-1"))
    assert run.error is None
    (line,) = run.logs
    assert line["event"] == "recording event"
    assert line["log_level"] == "info"
    assert (line["recordingId"], line["handler"], line["offset"]) == ("r-1", "LogHandler", 0)
    assert run.messages == ["recording event"]


@dataclass
class Chatty:
    """Publishes a copy of each event, then fails if asked to; counts start and close."""

    fail: bool = False
    calls: list[str] = field(default_factory=list)

    async def start(self) -> None:
        self.calls.append("start")

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        self.calls.append(f"handle {ctx.attempt}")
        await ctx.publish("copies", ctx.value, key=ctx.record.key, headers=[("h", b"1")])
        if self.fail:
            raise RetryLater("try again", delay=3)

    async def close(self) -> None:
        self.calls.append("close")


async def test_run_handler_records_publishes_and_lifecycle() -> None:
    """Publishes are recorded with key and headers; start and close wrap the handle call."""
    handler = Chatty()
    event = make_event()
    run = await run_handler(handler, event, attempt=3)
    (sent,) = run.published
    assert (sent.topic, sent.value, sent.key, sent.headers) == (
        "copies",
        encode_event(event),
        event.recording_id.encode() if event.recording_id else None,
        (("h", b"1"),),
    )
    assert handler.calls == ["start", "handle 3", "close"]


async def test_run_handler_returns_the_error_after_what_happened_before_it() -> None:
    """A raised exception is returned, together with the publishes made before it."""
    run = await run_handler(Chatty(fail=True), make_event(), value=b"raw")
    assert isinstance(run.error, RetryLater)
    assert run.error.delay == 3
    assert [p.value for p in run.published] == [b"raw"]


async def test_running_shares_one_started_handler() -> None:
    """Inside `running`, many runs reuse one started handler without restarting it."""
    handler = Chatty()
    async with running(handler):
        for _ in range(2):
            await run_handler(handler, make_event(), lifecycle=False)
    assert handler.calls == ["start", "handle 1", "handle 1", "close"]


@dataclass
class Seen:
    """Remembers the recording ids and raw values it was given."""

    ids: list[str | None] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        self.ids.append(event.recording_id)
        self.values.append(ctx.value)


async def test_kafka_round_trip_runs_the_worker(kafka_bootstrap: str, unique_name: str) -> None:
    """Events go through a real topic and the real Worker to the handler, original bytes intact."""
    raw = msgspec.json.encode({"eventType": "recordingAvailable", "recordingId": "r-raw"})
    handler = Seen()
    async with asyncio.timeout(60):
        await kafka_round_trip(
            kafka_bootstrap,
            {"seen": handler},
            [
                make_event(recording_id="r-1"),
                make_conference_event(recording_id="r-2"),
                (b"r-raw", raw),
            ],
            topic=unique_name,
        )
    assert handler.ids == ["r-1", "r-2", "r-raw"]
    assert handler.values[2] == raw
    assert isinstance(decode(handler.values[0]), RecordingAvailable)


async def test_handler_round_trip_fixture_reaches_the_handler_and_commits(
    handler_round_trip: RoundTrip, kafka_bootstrap: str, unique_name: str
) -> None:
    """The pytest plugin's fixture runs a handler over a real topic, committed to the end."""
    handler = Seen()
    async with asyncio.timeout(60):
        result = await handler_round_trip(
            {"seen": handler},
            [make_event(recording_id="r-a"), make_event(recording_id="r-b")],
            topic=unique_name,
        )
    assert handler.ids == ["r-a", "r-b"]
    assert result.outcomes["handled"] == 2
    assert result.dead_letters == []
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end == {0: 2}


@dataclass
class FailsFor:
    """Fails every attempt for the listed recordings; a `PermanentFailure` for "r-perm"."""

    failing: set[str]
    attempts: list[tuple[str | None, int]] = field(default_factory=list)

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        self.attempts.append((event.recording_id, ctx.attempt))
        if event.recording_id == "r-perm":
            raise PermanentFailure("no such recording")
        if event.recording_id in self.failing:
            raise RuntimeError("upstream down")


async def test_round_trip_result_has_outcomes_dead_letters_and_logs(
    handler_round_trip: RoundTrip, unique_name: str
) -> None:
    """Outcome counts, the dead letters as published, the log lines; the retry policy applies."""
    handler = FailsFor({"r-bad"})
    events: list[RecordingEvent | tuple[bytes | None, bytes]] = [
        make_event(recording_id="r-ok"),
        make_event(recording_id="r-bad"),
        make_event(recording_id="r-perm"),
        (b"junk", b"not json"),
    ]
    async with asyncio.timeout(90):
        result = await handler_round_trip(
            {"flaky": handler},
            events,
            topic=unique_name,
            retry=RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05),
        )
    assert {name: n for name, n in result.outcomes.items() if n} == {
        "handled": 1,
        "retried": 2,
        "dead_lettered": 2,
        "undecodable": 1,
    }
    assert set(result.outcomes) == set(OUTCOMES)
    assert [attempt for rid, attempt in handler.attempts if rid == "r-bad"] == [1, 2, 3]
    by_value = {dead.value: dead for dead in result.dead_letters}
    assert len(by_value) == 3
    bad = by_value[encode_event(make_event(recording_id="r-bad"))]
    assert (bad.handler, bad.error_class, bad.error_message) == (
        "flaky",
        "RuntimeError",
        "upstream down",
    )
    assert bad.reasons["dlq.attempts"] == "3"
    perm = by_value[encode_event(make_event(recording_id="r-perm"))]
    assert (perm.handler, perm.error_class) == ("flaky", "PermanentFailure")
    junk = by_value[b"not json"]
    assert (junk.handler, junk.error_class, junk.key) == (None, "DecodeError", b"junk")
    outcome_lines = [line["outcome"] for line in result.logs if line["event"] == "message"]
    assert sorted(outcome_lines) == sorted(
        ["handled", "retried", "retried", "dead_lettered", "dead_lettered", "undecodable"]
    )


@dataclass
class SkipsShort:
    """Passes over recordings shorter than 2 s on purpose; notes every call."""

    calls: list[tuple[str | None, int]] = field(default_factory=list)

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        self.calls.append((event.recording_id, ctx.attempt))
        if event.duration is not None and event.duration < timedelta(seconds=2):
            raise Skipped("shorter than 2 s")
        ctx.log.info("kept")


async def test_run_handler_shows_a_skip_and_its_reason() -> None:
    """A handler raising Skipped: `run.skipped` is the reason; a handled run's is None."""
    short = await run_handler(SkipsShort(), make_event(duration=timedelta(seconds=1)))
    assert isinstance(short.error, Skipped)
    assert (short.skipped, short.messages) == ("shorter than 2 s", [])
    long = await run_handler(SkipsShort(), make_event())
    assert (long.error, long.skipped, long.messages) == (None, None, ["kept"])


async def test_skipped_events_are_committed_and_neither_retried_nor_dead_lettered(
    handler_round_trip: RoundTrip, kafka_bootstrap: str, unique_name: str
) -> None:
    """Through a real broker: skips are committed, tried once, counted apart, never dead-lettered.

    A message whose every handler skipped is ``skipped``; one that another handler handled is
    ``handled``, its skip still counted per handler."""
    short, seen = SkipsShort(), Seen()
    brief = timedelta(seconds=1)
    events: list[RecordingEvent | tuple[bytes | None, bytes]] = [
        make_event(recording_id="r-short", duration=brief),
        make_event(recording_id="r-long"),
        make_event(recording_id="r-both", status="partial", duration=brief),
    ]
    async with asyncio.timeout(60):
        result = await handler_round_trip(
            {"short": short, "seen": seen},
            events,
            topic=unique_name,
            routes={"complete": ["short"], "partial": ["short", "seen"]},
            retry=RetryPolicy(max_attempts=3, initial_delay=0.01),
        )
    assert {name: n for name, n in result.outcomes.items() if n} == {"handled": 2, "skipped": 1}
    assert result.skipped_by == {"short": 2}
    assert result.dead_letters == []
    assert short.calls == [("r-short", 1), ("r-long", 1), ("r-both", 1)]
    assert seen.ids == ["r-both"]
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end == {0: 3}
    lines = {line["recordingId"]: line for line in result.logs if line["event"] == "message"}
    assert lines["r-short"]["outcome"] == "skipped"
    assert lines["r-short"]["skipped"] == {"short": "shorter than 2 s"}
    assert (lines["r-both"]["outcome"], lines["r-both"]["skipped"]) == (
        "handled",
        {"short": "shorter than 2 s"},
    )
    assert "skipped" not in lines["r-long"]
