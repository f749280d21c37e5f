"""Logging set-up: what reaches the log stream."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = """
import structlog
from consumer.config import LoggingSettings
from consumer.logs import configure_logging

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
