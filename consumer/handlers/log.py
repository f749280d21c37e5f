"""The ``log`` handler: one structured line per event."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consumer.events import RecordingEvent
    from consumer.handler_api import Context


class LogHandler:
    """Writes the event at info level; ``ctx.log`` already carries its ids and status."""

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        ctx.log.info(
            "recording event",
            fileFormat=event.file_format,
            duration=str(event.duration) if event.duration is not None else None,
            mediaUrl=event.media_url,
        )
