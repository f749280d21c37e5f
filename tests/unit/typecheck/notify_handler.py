"""A plugin written against `consumer`'s public names only; mypy --strict must accept it."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import msgspec
from typing_extensions import override

from consumer import (
    BaseHandler,
    OptionError,
    PermanentFailure,
    RetryLater,
    RetryPolicy,
    RoundTrip,
    Secret,
    Skipped,
    make_conference_event,
    make_event,
    retry_after,
    run_handler,
)

if TYPE_CHECKING:
    from consumer import Context, RecordingEvent


class NotifyOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str
    token: Secret
    retries: int = 3


class Notify(BaseHandler):
    """POSTs each recording's ids to `url`."""

    Options: ClassVar[type[NotifyOptions]] = NotifyOptions

    def __init__(self, options: NotifyOptions) -> None:
        if options.retries < 1:
            raise OptionError("retries", "must be at least 1")
        self._options = options

    @override
    async def start(self) -> None:
        self.sent = 0

    @override
    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        if event.status == "processing":
            raise Skipped("nothing to tell before the recording is ready")
        body = {"recording": event.recording_id, "of": event.subject_id, "status": event.status}
        response = await ctx.http.post(
            self._options.url,
            json=body,
            headers={"authorization": f"Bearer {self._options.token.reveal()}"},
            timeout=10,
        )
        if response.status_code == 429 or response.status_code >= 500:
            delay = retry_after(response.headers.get("retry-after"))
            raise RetryLater(f"notify answered HTTP {response.status_code}", delay=delay)
        if response.status_code >= 400:
            raise PermanentFailure(f"notify answered HTTP {response.status_code}")
        self.sent += 1
        ctx.log.info("notified", attempt=ctx.attempt, offset=ctx.record.offset)

    @override
    async def close(self) -> None:
        self.sent = 0


async def check(handler_round_trip: RoundTrip) -> None:
    handler = Notify(NotifyOptions(url="https://example.test/hook", token=Secret("t")))
    run = await run_handler(handler, make_conference_event(), name="notify")
    assert run.error is None
    assert run.messages == ["notified"]
    skipped = await run_handler(handler, make_event(status="processing"))
    reason: str | None = skipped.skipped
    assert reason is not None
    result = await handler_round_trip(
        {"notify": handler},
        [make_event(status="complete")],
        retry=RetryPolicy(max_attempts=2, initial_delay=0.01),
    )
    handled: int = result.outcomes["handled"] + result.outcomes["dead_lettered"]
    reasons = [(dead.handler, dead.error_class) for dead in result.dead_letters]
    assert handled == 1
    passed_over: int = result.outcomes["skipped"] + result.skipped_by.get("notify", 0)
    assert not passed_over
    assert not reasons
    assert result.messages
