"""Handlers for tests that run the worker as a separate process (loaded by module:attribute)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from consumer.events import RecordingEvent
from consumer.handler_api import Context


def _append(variable: str, ctx: Context, event: RecordingEvent) -> None:
    path = os.environ.get(variable)
    if path:
        line = f"{ctx.record.partition}:{ctx.record.offset}:{event.recording_id}\n"
        with Path(path).open("a") as out:  # one small O_APPEND write: atomic across processes
            out.write(line)


def _journal(phase: str, ctx: Context) -> None:
    path = os.environ.get("TEST_JOURNAL_FILE")
    if path:
        # CLOCK_MONOTONIC is system-wide on Linux: times compare across worker processes.
        line = (
            f"{os.getpid()} {phase} {ctx.record.partition} {ctx.record.offset} {time.monotonic()}\n"
        )
        with Path(path).open("a") as out:
            out.write(line)


class AppendToFile:
    """Notes the start in $TEST_STARTED_FILE, sleeps $TEST_HANDLER_DELAY seconds, then appends
    ``partition:offset:recordingId`` to $TEST_HANDLED_FILE ($TEST_CANCELLED_FILE if cancelled).

    With $TEST_JOURNAL_FILE set, also notes ``pid phase partition offset time`` for each start,
    end and cancellation, for the drills' checks (tests/_support/drill.py)."""

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        _append("TEST_STARTED_FILE", ctx, event)
        _journal("start", ctx)
        try:
            await asyncio.sleep(float(os.environ.get("TEST_HANDLER_DELAY", "0")))
        except asyncio.CancelledError:
            _append("TEST_CANCELLED_FILE", ctx, event)
            _journal("cancel", ctx)
            raise
        _append("TEST_HANDLED_FILE", ctx, event)
        _journal("end", ctx)
