"""Proof that a ``deleted`` event is true, before the download handler removes a stored copy.

Anyone who can write to the topic can forge a ``deleted`` event, so with ``on_deleted =
"delete"`` a stored recording goes only when both hold:

- the event's ``accountId`` and ``callId`` (or ``conferenceId``) are the ones the stored copy
  was saved with (the sidecar, or the S3 object's metadata);
- Bandwidth itself answers 404 for the recording's metadata,
  ``GET {api_url}/accounts/{accountId}/calls/{callId}/recordings/{recordingId}`` (or the
  ``conferences/{conferenceId}`` form).

Otherwise `DeletionRefused`: nothing is removed and the message is dead-lettered with the
reason. A 429, a 5xx or a transport failure proves nothing either way, so it is retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import httpx

from consumer.errors import PermanentFailure, RetryLater
from consumer.events import ConferenceRecordingAvailable, RecordingEvent
from consumer.handlers.bandwidth import Authenticator, authorized_get, recording_path
from consumer.http import retry_after

if TYPE_CHECKING:
    from consumer.handler_api import Context

IDENTITY: Final = ("accountid", "callid", "conferenceid")
"""The stored copy's metadata compared with the event, lowercased as S3 returns them."""


class DeletionRefused(PermanentFailure):
    """A ``deleted`` event without proof: the stored copy is kept. Its own class so dead letters
    (``dlq.error.class``) and logs tell a refused deletion from a failed download."""


def metadata_url(api_url: str, event: RecordingEvent) -> str:
    """The recording's metadata URL at Bandwidth, from the event's checked ids."""
    return api_url + recording_path(event)


def check_same_recording(event: RecordingEvent, stored: Mapping[str, str]) -> None:
    """DeletionRefused unless the stored copy was saved for this event's account and call (or
    conference)."""
    if isinstance(event, ConferenceRecordingAvailable):
        claimed = {"accountid": event.account_id, "conferenceid": event.conference_id}
    else:
        claimed = {"accountid": event.account_id, "callid": event.call_id}
    for key in IDENTITY:
        if stored.get(key) != claimed.get(key):
            field = {"accountid": "accountId", "callid": "callId"}.get(key, "conferenceId")
            raise DeletionRefused(f"deletion refused: the event's {field} is not the stored copy's")


async def check_gone(url: str, auth: Authenticator | None, ctx: Context, *, seconds: float) -> None:
    """Return only if Bandwidth answers 404 for the recording's metadata at `url` (within
    `seconds` per request)."""
    try:
        response = await authorized_get(auth, ctx, url, accept="application/json", seconds=seconds)
        await response.aclose()
    except httpx.TransportError as exc:
        raise RetryLater(f"recording metadata request failed: {type(exc).__name__}") from exc
    status = response.status_code
    if status == 404:
        return
    if status == 429 or status >= 500:
        delay = retry_after(response.headers.get("retry-after"))
        raise RetryLater(f"recording metadata request answered HTTP {status}", delay=delay)
    if status == 401:
        raise RetryLater("recording metadata request unauthorized even with renewed credentials")
    if status == 200:
        raise DeletionRefused("deletion refused: the recording still exists at Bandwidth")
    raise DeletionRefused(
        f"deletion refused: recording metadata request answered HTTP {status}, not 404"
    )
