"""A built-in sample set: every status, a status Bandwidth may add later, and a broken message."""

from __future__ import annotations

import msgspec

ACCOUNT = "9900000"
SAMPLE_STATUSES = ("processing", "partial", "complete", "deleted", "error", "transcoding")
"""The five documented statuses and one unknown future value, which must take the default route."""
MALFORMED = b'{"eventType": "recordingAvailable", "recordingId": "r-broken", "channels": "one"}'


def recording_event(recording_id: str, call_id: str, status: str) -> dict[str, object]:
    """A fully populated recordingAvailable callback as Bandwidth posts it."""
    call = f"https://voice.bandwidth.com/api/v2/accounts/{ACCOUNT}/calls/{call_id}"
    return {
        "eventType": "recordingAvailable",
        "eventTime": "2026-11-27T10:15:30.123Z",
        "accountId": ACCOUNT,
        "applicationId": "7fc9698a-b04a-468b-9e8f-91238c0d0086",
        "from": "+15551112222",
        "to": "+15553334444",
        "direction": "inbound",
        "callId": call_id,
        "callUrl": call,
        "recordingId": recording_id,
        "mediaUrl": f"{call}/recordings/{recording_id}/media" if status != "deleted" else None,
        "startTime": "2026-11-27T10:14:10.002Z",
        "endTime": "2026-11-27T10:15:20.456Z",
        "duration": "PT70.454S",
        "fileFormat": "wav",
        "channels": 1,
        "tag": "sample",
        "status": status,
    }


def sample_messages(repeat: int) -> list[tuple[bytes | None, bytes]]:
    """(key, value) pairs: each status once per repetition, then one undecodable message."""
    encode = msgspec.json.encode
    messages: list[tuple[bytes | None, bytes]] = []
    for n in range(repeat):
        for i, status in enumerate(SAMPLE_STATUSES):
            recording_id = f"r-{n:06d}-{i:02d}-sample"
            event = recording_event(recording_id, f"c-{n:06d}-{i:02d}-sample", status)
            messages.append((recording_id.encode(), encode(event)))
    messages.append((None, MALFORMED))
    return messages
