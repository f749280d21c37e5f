"""Logging set-up: what reaches the log stream."""

from __future__ import annotations

import contextvars
import json
import subprocess
import sys

import pytest
import structlog
from structlog.typing import EventDict

from consumer.observability.logs import merge_contextvars

SCRIPT = """
import structlog
from consumer.settings.config import LoggingSettings
from consumer.observability.logs import configure_logging

configure_logging(LoggingSettings(format="{fmt}"))

def handler():
    authorization = "Basic c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3M="
    raise RuntimeError("upstream refused")

try:
    handler()
except RuntimeError:
    structlog.get_logger().exception("handler failed", offset=7)
"""


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_tracebacks_carry_no_local_variables(fmt: str) -> None:
    """A logged exception shows the frames but not their locals, which may hold credentials."""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(fmt=fmt)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "upstream refused" in result.stdout
    assert "c2VjcmV0" not in result.stdout + result.stderr
    if fmt == "json":
        (line,) = result.stdout.splitlines()
        entry = json.loads(line)
        assert entry["offset"] == 7
        assert entry["exception"][0]["frames"][-1]["name"] == "handler"


ESCAPES = """
import structlog
from consumer.settings.config import LoggingSettings
from consumer.observability.logs import configure_logging

configure_logging(LoggingSettings(format="console"))
log = structlog.get_logger()
log.info("message", recordingId="r-1\\x1b[2J\\x1b]0;pwned\\x07", tag="\\x9b31m\\u202eevil")
try:
    raise RuntimeError("bad \\x1b[31mred")
except RuntimeError:
    log.exception("handler \\x1b[1mfailed")
"""


def test_console_format_escapes_control_characters() -> None:
    """Escape sequences in fields, messages and exceptions are shown escaped, never sent raw."""
    result = subprocess.run(
        [sys.executable, "-c", ESCAPES], capture_output=True, text=True, timeout=60, check=True
    )
    out = result.stdout
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw not in out, f"{raw!r} reached the console"
    assert "recordingId=r-1\\x1b[2J\\x1b]0;pwned\\x07" in out
    assert "tag=\\x9b31m\\u202eevil" in out
    assert "handler \\x1b[1mfailed" in out
    assert "RuntimeError: bad \\x1b[31mred" in out
    assert "Traceback (most recent call last):\n" in out, "a traceback keeps its lines"


def test_context_bound_through_structlogs_api_reaches_the_line_and_unbinding_removes_it() -> None:
    """Values bound with structlog's public contextvars API are merged into each line (without
    overriding the line's own fields) and gone once unbound; with nothing bound, a line passes
    through unchanged."""

    def run() -> list[EventDict]:
        lines = [merge_contextvars(None, "info", {"event": "bare"})]
        with structlog.contextvars.bound_contextvars(request_id="r-1", offset=0):
            lines.append(merge_contextvars(None, "info", {"event": "bound", "offset": 7}))
        lines.append(merge_contextvars(None, "info", {"event": "after"}))
        return lines

    # In a fresh context, as a worker's task starts: nothing bound yet.
    bare, bound, after = contextvars.Context().run(run)
    assert bare == {"event": "bare"}
    assert bound == {"event": "bound", "offset": 7, "request_id": "r-1"}
    assert after == {"event": "after"}
