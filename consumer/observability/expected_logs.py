"""aiokafka's error lines that are expected for a while: a topic being auto-created, a fresh
broker still creating its group coordinator.

aiokafka logs these at error (and warning) level and retries by itself; during a normal first
run they read as a failure. For `GRACE` seconds after one is first seen they count as info
lines, which are not written for libraries; if the same one is still reported after that, it
is a real problem and is written at the level aiokafka gave it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiokafka.errors import GroupCoordinatorNotAvailableError

from consumer.kafka.aiokafka_text import (
    COORDINATOR_MARKED_DEAD,
    COORDINATOR_REQUEST_FAILED,
    TOPIC_NOT_FOUND,
)

GRACE = 30.0
"""Seconds a new topic or a fresh broker's coordinator may take to appear."""


def _expected(record: logging.LogRecord) -> str | None:
    """What the record is about (the topic, the group's coordinator) if it is one of the
    expected ones, else None."""
    args = record.args if isinstance(record.args, tuple) else ()
    if record.msg == TOPIC_NOT_FOUND and args:
        return f"topic {args[0]}"
    if record.msg == COORDINATOR_REQUEST_FAILED and args:
        error = args[0]
        if isinstance(error, GroupCoordinatorNotAvailableError):
            return "coordinator"
    if record.msg == COORDINATOR_MARKED_DEAD:
        return "coordinator"  # the warning that follows while the coordinator is created
    return None


class ExpectedAtFirst(logging.Filter):
    """The library records' handler filter: holds the expected records back within their grace."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._first_seen: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        about = _expected(record)
        if about is None:
            return True
        now = self._clock()
        first = self._first_seen.setdefault(about, now)
        return now - first >= GRACE
