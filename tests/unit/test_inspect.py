"""`recording-consumer inspect`: what operators see for each line, and its exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests._support.kafka_helpers import REPO

DOC_EXAMPLE = (
    b'{"eventType":"recordingAvailable","eventTime":"2019-09-13T16:49:40.500","accountId":"55555555",'
    b'"callId":"c-1","recordingId":"r-1","status":"complete"}'
)


def inspect(stdin: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", "inspect", "--config", "config/consumer.toml", *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_good_lines_show_summary_and_route() -> None:
    """A decodable line prints its summary and the handlers of its route; exit status 0."""
    result = inspect(DOC_EXAMPLE + b"\n" + DOC_EXAMPLE.replace(b"complete", b"archived") + b"\n")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == (
        "1: eventType=recordingAvailable status=complete recordingId=r-1 callId=c-1 "
        "accountId=55555555 -> log"
    )
    assert second.endswith(
        "status=archived recordingId=r-1 callId=c-1 accountId=55555555 -> log (default route)"
    )


def test_decode_errors_show_path_and_fail_the_run(tmp_path: Path) -> None:
    """A wrong type prints the reason and JSON path, and the exit status is non-zero."""
    lines = tmp_path / "lines.jsonl"
    lines.write_bytes(
        b'{"eventType":"recordingAvailable","channels":"one"}\n' + DOC_EXAMPLE + b"\n"
    )
    result = inspect(b"", str(lines))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        "1: undecodable: Expected `int | null`, got `str` (path $.channels)"
    )


def test_other_and_unknown_types_and_malformed_fields_are_explained() -> None:
    """Skipped types name their policy; a malformed timestamp is shown with its raw text."""
    stdin = (
        b'{"eventType":"answer"}\n{"eventType":"hologramReady"}\n'
        b'{"eventType":"recordingAvailable","recordingId":"r-2","endTime":"soon"}\n'
    )
    result = inspect(stdin)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "1: skipped (other event type 'answer', policy skip)",
        "2: skipped (unknown event type 'hologramReady', policy warn)",
        "3: eventType=recordingAvailable recordingId=r-2 -> log (default route)",
        "    malformed endTime: 'soon' kept as text",
    ]
