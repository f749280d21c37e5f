"""Handlers for tests that run the worker as a separate process (loaded by module:attribute)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from consumer.events import RecordingEvent
from consumer.handler import Context


def _append(variable: str, ctx: Context, event: RecordingEvent) -> None:
    path = os.environ.get(variable)
    if path:
        line = f"{ctx.record.partition}:{ctx.record.offset}:{event.recording_id}\n"
        with Path(path).open("a") as out:  # one small O_APPEND write: atomic across processes
            out.write(line)


class AppendToFile:
    """Notes the start in $TEST_STARTED_FILE, sleeps $TEST_HANDLER_DELAY seconds, then appends
    ``partition:offset:recordingId`` to $TEST_HANDLED_FILE ($TEST_CANCELLED_FILE if cancelled)."""

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        _append("TEST_STARTED_FILE", ctx, event)
        try:
            await asyncio.sleep(float(os.environ.get("TEST_HANDLER_DELAY", "0")))
        except asyncio.CancelledError:
            _append("TEST_CANCELLED_FILE", ctx, event)
            raise
        _append("TEST_HANDLED_FILE", ctx, event)
