"""The audit handler, through the plugin kit: one handle call at a time, then a real broker."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from pathlib import Path

import pytest
import recording_consumer_audit
from recording_consumer_audit import AuditLogHandler, AuditOptions, read_audit_log

from consumer import (
    ConfigError,
    OptionError,
    PermanentFailure,
    Record,
    RetryLater,
    RoundTrip,
    make_event,
    run_handler,
    running,
)


def audit(path: Path, **options: object) -> AuditLogHandler:
    return AuditLogHandler(AuditOptions(path=str(path), **options))  # type: ignore[arg-type]


def at(offset: int, topic: str = "recordings") -> Record:
    return Record(topic=topic, partition=0, offset=offset, key=None, headers=(), timestamp=0)


async def test_writes_one_line_with_the_original_event(tmp_path: Path) -> None:
    """A handled event is one JSON line: where it came from, and the value as it arrived."""
    path = tmp_path / "audit" / "log.jsonl"
    value = b'{"eventType": "recordingAvailable", "recordingId": "r-1", "vendorExtra": 7}'
    run = await run_handler(audit(path), make_event(recording_id="r-1"), value=value)
    assert run.error is None
    assert run.messages == ["event audited"]
    (line,) = read_audit_log(path)
    assert (line.topic, line.partition, line.offset, line.attempt) == ("recordings", 0, 0, 1)
    assert line.event == {"eventType": "recordingAvailable", "recordingId": "r-1", "vendorExtra": 7}
    assert json.loads(path.read_text())["auditedAt"].endswith("Z")


async def test_redelivery_is_written_once_even_after_a_restart(tmp_path: Path) -> None:
    """The same record again, in the same process or a restarted one, adds no line."""
    path = tmp_path / "log.jsonl"
    event = make_event()
    async with running(audit(path)) as handler:
        for offset in (0, 1, 0):
            run = await run_handler(handler, event, record=at(offset), lifecycle=False)
            assert run.error is None
        assert run.messages == ["already audited"]
    restarted = await run_handler(audit(path), event, record=at(1), attempt=2)
    assert restarted.messages == ["already audited"]
    other_topic = await run_handler(audit(path), event, record=at(1, topic="elsewhere"))
    assert other_topic.messages == ["event audited"]
    assert [(line.topic, line.offset) for line in read_audit_log(path)] == [
        ("recordings", 0),
        ("recordings", 1),
        ("elsewhere", 1),
    ]


async def test_concurrent_events_each_get_a_whole_line(tmp_path: Path) -> None:
    """Many events at once (as the worker runs them) give one intact line each."""
    path = tmp_path / "log.jsonl"
    async with running(audit(path, fsync=False)) as handler:
        runs = await asyncio.gather(
            *(
                run_handler(
                    handler, make_event(recording_id=f"r-{n}"), record=at(n), lifecycle=False
                )
                for n in range(50)
            )
        )
    assert [run.error for run in runs] == [None] * 50
    assert sorted(line.offset for line in read_audit_log(path)) == list(range(50))
    assert len(path.read_bytes().splitlines()) == 50


async def test_value_that_is_not_json_fails_permanently(tmp_path: Path) -> None:
    """A value that cannot be recorded faithfully is not retried, and writes nothing."""
    path = tmp_path / "log.jsonl"
    run = await run_handler(audit(path), make_event(), value=b"not json")
    assert isinstance(run.error, PermanentFailure)
    assert path.read_bytes() == b""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
async def test_full_disk_asks_for_a_retry_after_the_configured_delay() -> None:
    """ENOSPC becomes RetryLater with full_disk_delay, so the worker waits instead of spinning."""
    run = await run_handler(audit(Path("/dev/full"), full_disk_delay=12.5), make_event())
    assert isinstance(run.error, RetryLater)
    assert run.error.delay == 12.5


async def test_unopenable_path_stops_start_up(tmp_path: Path) -> None:
    """A path that cannot be opened stops start(); the worker reports the key under our name."""
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"^handlers\.audit_copy\.path: cannot open") as info:
        await run_handler(audit(tmp_path / "file" / "log.jsonl"), make_event(), name="audit_copy")
    assert info.value.key == "handlers.audit_copy.path"


def test_bad_option_value_is_refused() -> None:
    """remember must be positive; the error names the option (the worker adds handlers.<name>)."""
    with pytest.raises(OptionError, match=r"^remember: must be at least 1$") as info:
        audit(Path("x"), remember=0)
    assert info.value.option == "remember"


async def test_through_a_real_broker(handler_round_trip: RoundTrip, tmp_path: Path) -> None:
    """Events produced to Kafka and consumed by the real worker each leave one line, in order."""
    path = tmp_path / "log.jsonl"
    topic = f"audit-{uuid.uuid4().hex[:12]}"
    events = [
        make_event(recording_id=f"r-{n}", status=s)
        for n, s in enumerate(["partial", "complete", "error"])
    ]
    async with asyncio.timeout(60):
        result = await handler_round_trip({"audit": audit(path)}, events, topic=topic)
    lines = read_audit_log(path)
    assert [(line.topic, line.offset) for line in lines] == [(topic, 0), (topic, 1), (topic, 2)]
    assert [line.event["status"] for line in lines] == ["partial", "complete", "error"]
    assert result.outcomes["handled"] == 3
    assert result.dead_letters == []
    assert result.messages.count("event audited") == 3


async def test_cancelled_attempt_still_finishes_and_remembers_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attempt cancelled mid-write (a timeout) leaves one whole line, and its retry adds none."""
    path = tmp_path / "log.jsonl"
    started, release = threading.Event(), threading.Event()
    append = recording_consumer_audit._append

    def slow_append(fd: int, data: bytes, sync: bool) -> None:
        started.set()
        release.wait(10)
        append(fd, data, sync)

    monkeypatch.setattr(recording_consumer_audit, "_append", slow_append)
    event = make_event()
    async with running(audit(path)) as handler:
        attempt = asyncio.create_task(run_handler(handler, event, record=at(0), lifecycle=False))
        assert await asyncio.to_thread(started.wait, 10)
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        release.set()
        retry = await run_handler(handler, event, record=at(0), attempt=2, lifecycle=False)
    assert retry.messages == ["already audited"]
    assert [line.offset for line in read_audit_log(path)] == [0]
