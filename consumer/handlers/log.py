"""The ``log`` handler: one structured line per event."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consumer.events import RecordingEvent
    from consumer.handler import Context


class LogHandler:
    """Writes the event's summary at info level; the default route's handler."""

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        ctx.log.info("recording event", **event.summary())
