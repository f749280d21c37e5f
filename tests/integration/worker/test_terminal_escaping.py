"""Every printer of the command line escapes what a producer wrote: controls and bidi overrides
from event fields and headers never reach the operator's terminal raw."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from consumer.cli.samples import recording_event
from consumer.deadletters import commands as dlq
from consumer.deadletters import headers as dl
from consumer.settings.config import KafkaSettings
from tests._support.kafka_helpers import REPO, printer

RAW = ("\x1b", "\x07", "\x9b", "\u202e")
"""An escape sequence's start, BEL, the C1 CSI and RIGHT-TO-LEFT OVERRIDE."""
STATUS = "\x1b[2J\u202eevil"
RECORDING_ID = "r-\x1b]0;title\x07"


def hostile_event() -> bytes:
    event = recording_event(RECORDING_ID, "c-\x9b31m", STATUS)
    event["endTime"] = "soon\x1b[5m"  # malformed: kept as text, shown by inspect
    return msgspec.json.encode(event)


def assert_escaped(text: str) -> None:
    for raw in RAW:
        assert raw not in text, f"{raw!r} reached the terminal"


def run(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        input=stdin,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_inspect_escapes_fields_types_and_envelope_ids() -> None:
    """inspect prints a hostile event's fields, an unknown event type, a malformed field's raw
    text and a CloudEvent id with their controls escaped, in raw and envelope mode alike."""
    unknown = msgspec.json.encode({"eventType": "holo\x1b[31m\u202e"})
    raw = run("inspect", stdin=(hostile_event() + b"\n" + unknown + b"\n").decode())
    envelope = msgspec.json.encode(
        {
            "specversion": "1.0",
            "id": "ce-\x1b[1A\u202e",
            "source": "/bandwidth",
            "type": "com.bandwidth.recordingAvailable",
            "datacontenttype": "application/json",
            "data": msgspec.json.decode(hostile_event()),
        }
    )
    wrapped = run(
        "inspect",
        stdin=envelope.decode() + "\n",
        RECORDING_CONSUMER__EVENTS__ENVELOPE='"cloudevents"',
    )

    assert raw.returncode == wrapped.returncode == 0, raw.stderr + wrapped.stderr
    for result in (raw, wrapped):
        assert_escaped(result.stdout + result.stderr)
    event, malformed, skipped = raw.stdout.splitlines()
    assert "status=\\x1b[2J\\u202eevil recordingId=r-\\x1b]0;title\\x07 " in event
    assert "callId=c-\\x9b31m" in event
    assert malformed == "    malformed endTime: 'soon\\x1b[5m' kept as text"
    assert skipped == "2: skipped (unknown event type 'holo\\x1b[31m\\u202e', policy warn)"
    assert "[CloudEvent id=ce-\\x1b[1A\\u202e]" in wrapped.stdout


@pytest.mark.parametrize("log_format", ["console", "json"])
async def test_run_summary_and_log_lines_escape_a_hostile_event(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    log_format: str,
) -> None:
    """`run --until-idle`, console or JSON log: the event's lines and the summary carry no raw
    controls or bidi marks (JSON lines escape them as JSON, so they still decode to the
    event's text); the hostile status is counted as `other`."""
    await create_topic(kafka_bootstrap, unique_name)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(unique_name, hostile_event(), key=b"k")
        unknown = msgspec.json.encode({"eventType": "holo\x1b[31m\u202e"})
        await producer.send_and_wait(unique_name, unknown, key=b"k")
    finally:
        await producer.stop()

    result = run(
        "run",
        "--config",
        str(REPO / "tests" / "_support" / "minimal.toml"),
        "--until-idle",
        "1",
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        RECORDING_CONSUMER__KAFKA__TOPIC=unique_name,
        RECORDING_CONSUMER__KAFKA__GROUP_ID=unique_name,
        RECORDING_CONSUMER__LOGGING__FORMAT=f'"{log_format}"',
    )

    assert result.returncode == 0, result.stderr
    assert_escaped(result.stdout + result.stderr)
    if log_format == "console":
        assert "\\x1b[2J\\u202eevil" in result.stdout, "the log line shows the status, escaped"
        assert "holo\\x1b[31m\\u202e" in result.stdout
    else:
        lines = [msgspec.json.decode(line) for line in result.stdout.splitlines()]
        assert STATUS in [line.get("status") for line in lines]
        assert "holo\x1b[31m\u202e" in [line.get("eventType") for line in lines]
    summary = result.stderr.split("Routed (status -> handler: events):\n")[1].splitlines()
    assert summary[0] == "  other        -> log: 1"
    assert summary[1] == "Outcomes: handled 1, skipped 1"


async def test_replay_lines_escape_forged_headers(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """replay's "cannot replay" line names a forged dlq.topic, and its "replayed" line the
    target, with their controls escaped; `dlq show` too."""
    source, dlq_topic = unique_name, f"{unique_name}.dlq"
    await create_topic(kafka_bootstrap, source)
    await create_topic(kafka_bootstrap, dlq_topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        forged = [
            (dl.TOPIC, "elsewhere\x1b[2J\u202e".encode()),
            (dl.PARTITION, b"0"),
            (dl.OFFSET, b"0"),
            (dl.TIMESTAMP, b"0"),
            (dl.VALUE_TOO_LARGE, b"10"),
            (dl.ERROR_MESSAGE, "boom\x07\x9b".encode()),
        ]
        await producer.send_and_wait(dlq_topic, b"", headers=forged)
    finally:
        await producer.stop()
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=source)
    out, shown = io.StringIO(), io.StringIO()

    counts = await dlq.replay(
        kafka,
        dlq_topic,
        f"{unique_name}.replay",
        to=source,
        error_class=None,
        handler=None,
        recording_id=None,
        dry_run=True,
        say=printer(out),
    )
    await dlq.show(kafka, dlq_topic, None, printer(shown))

    assert counts == (0, 1)
    assert_escaped(out.getvalue() + shown.getvalue())
    assert out.getvalue() == (
        f"cannot replay {dlq_topic}/0/0: parts of it were left out of its dead letter and "
        f"elsewhere\\x1b[2J\\u202e/0/0 is not in {source}; skipped\n"
    )
    assert 'message="boom\\u0007\\x9b"' in shown.getvalue()


def test_error_lines_escape_what_they_quote(tmp_path: Path) -> None:
    """A start-up error quoting a file name with controls in it prints them escaped."""
    result = run("inspect", str(tmp_path / "missing\x1b[2J\u202e.jsonl"))
    assert result.returncode == 2
    assert_escaped(result.stderr)
    assert "missing\\x1b[2J\\u202e.jsonl" in result.stderr
