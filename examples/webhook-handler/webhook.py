"""A handler that tells an HTTP API about each finished recording, through ``ctx.http``.

Unpackaged, it is named by ``[plugins] paths`` (``webhook = "webhook:WebhookHandler"``, with
this directory on ``PYTHONPATH``); its test stands in for ``ctx.http`` with httpx's
MockTransport, so it runs with no server and no network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import httpx
import msgspec
from typing_extensions import override

from consumer import BaseHandler, PermanentFailure, RetryLater, Secret, Skipped, retry_after

if TYPE_CHECKING:
    from consumer import Context, RecordingEvent


class WebhookOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[handlers.webhook]`` in the worker's settings."""

    url: str
    """Where each finished recording is POSTed."""
    token: Secret
    """Sent as the bearer token; set it from the environment, not in the settings file."""
    timeout: float = 10.0
    """Seconds per request."""


class WebhookHandler(BaseHandler):
    """POSTs the ids of each ``complete`` recording; passes over the other statuses."""

    Options: ClassVar[type[WebhookOptions]] = WebhookOptions

    def __init__(self, options: WebhookOptions) -> None:
        self._options = options

    @override
    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        if event.status != "complete":
            raise Skipped(f"status {event.status}: only complete recordings are announced")
        body = {
            "recordingId": event.recording_id,
            "subjectId": event.subject_id,
            "mediaUrl": event.media_url,
        }
        headers = {
            "authorization": f"Bearer {self._options.token.reveal()}",
            # The same event delivered twice carries the same key: the API can drop the repeat.
            "idempotency-key": f"{event.recording_id}:{event.status}",
        }
        try:
            response = await ctx.http.post(
                self._options.url, json=body, headers=headers, timeout=self._options.timeout
            )
        except httpx.TransportError as exc:
            raise RetryLater(f"webhook unreachable: {type(exc).__name__}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            delay = retry_after(response.headers.get("retry-after"))
            raise RetryLater(f"webhook answered HTTP {status}", delay=delay)
        if status >= 400:
            raise PermanentFailure(f"webhook answered HTTP {status}")
        ctx.log.info("recording announced", http_status=status)
