"""Library log records through our pipeline, and repeated problems collapsed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import structlog

from consumer.observability.logs import Repeats

LIBRARY_SCRIPT = """
import logging
from consumer.settings.config import LoggingSettings
from consumer.observability.logs import configure_logging

configure_logging(LoggingSettings(format="json"))
for _ in range(50):
    logging.getLogger("aiokafka.conn").error("Unable connect to node %s", 1)
logging.getLogger("aiokafka").info("chatter below warning")
"""


def test_library_records_are_json_and_collapsed() -> None:
    """aiokafka's records come out as our JSON lines (timestamp, level, logger) on stdout,
    fifty identical ones as one; stderr stays empty."""
    result = subprocess.run(
        [sys.executable, "-c", LIBRARY_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stderr == ""
    (line,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert line["event"] == "Unable connect to node 1"
    assert line["logger"] == "aiokafka.conn"
    assert line["level"] == "error"
    assert "timestamp" in line


def test_repeats_are_counted_on_the_next_line() -> None:
    """Within the interval an identical line is held back; the next one written says how many
    were; a different line, or an info line, always passes."""
    repeats = Repeats(interval=0.2)

    def passes(event: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return repeats(None, "error", dict(event))
        except structlog.DropEvent:
            return None

    outage = {"event": "broker unreachable", "level": "error"}
    assert passes(outage) == outage
    assert passes(outage) is None
    assert passes(outage) is None
    assert passes({"event": "other problem", "level": "error"}) is not None
    assert passes({"event": "message", "level": "info"}) is not None
    assert passes({"event": "message", "level": "info"}) is not None
    deadline = time.monotonic() + 5
    while (again := passes(outage)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert again["repeated"] >= 2
