"""A run of failures that repeat until something outside the process is fixed (a disk, a volume):
retried with backoff, logged when the run begins, at most every `REMIND_EVERY` seconds while it
lasts, and once when it ends. One line per attempt would flood the log and hide the first."""

from __future__ import annotations

import time

import structlog

from consumer.backoff import Backoff

REMIND_EVERY = 60.0
"""Seconds between two lines about the same run of failures."""


class Streak:
    """Failures of one kind in a row: when the next attempt is due, and their log lines."""

    def __init__(self, backoff: Backoff, failing: str, ended: str) -> None:
        self.failures = 0
        self._backoff, self._failing, self._ended = backoff, failing, ended
        self._next_try = self._logged = float("-inf")
        self._log = structlog.get_logger("consumer.ingress")

    def failed(self, error: BaseException) -> None:
        self.failures += 1
        now = time.monotonic()
        self._next_try = now + self._backoff.delay(self.failures)
        if self.failures == 1 or now - self._logged >= REMIND_EVERY:
            self._logged = now
            self._log.error(self._failing, error=str(error), failures=self.failures)

    def ended(self) -> None:
        if self.failures:
            self._log.info(self._ended, failures=self.failures)
        self.failures = 0
        self._next_try = float("-inf")

    def wait(self) -> float:
        """Seconds until the next attempt is due; 0 when it is."""
        return max(0.0, self._next_try - time.monotonic())
