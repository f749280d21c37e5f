"""Mistakes the public types must catch: mypy --strict must reject each marked line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from typing_extensions import override

from consumer import BaseHandler, RoundTripResult

if TYPE_CHECKING:
    from consumer import Context, RecordingEvent


class Notify(BaseHandler):
    @override
    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        ctx.log.info("seen", call=event.call_id)  # error: conference events have no call_id

    @override
    async def clsoe(self) -> None:  # error: misspelt close overrides nothing
        pass


class NoHandle(BaseHandler):
    pass


NoHandle()  # error: handle is abstract


def handled(result: RoundTripResult) -> int:
    return result.outcomes["handeld"]  # error: not an outcome name
