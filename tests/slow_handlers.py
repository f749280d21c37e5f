"""Handlers for tests that run the worker as a separate process (loaded by module:attribute)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from consumer.events import RecordingEvent
from consumer.handler import Context


class AppendToFile:
    """Sleeps a little, then appends ``partition:offset:recordingId`` to $TEST_HANDLED_FILE."""

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        await asyncio.sleep(float(os.environ.get("TEST_HANDLER_DELAY", "0")))
        line = f"{ctx.record.partition}:{ctx.record.offset}:{event.recording_id}\n"
        with Path(os.environ["TEST_HANDLED_FILE"]).open("a") as out:  # noqa: ASYNC230 - tiny write
            out.write(line)
