"""Throughput of decoding recordingAvailable callbacks: ours against the alternatives, and the
same callbacks in CloudEvents envelopes (structured and binary mode) against raw ones.

Run from the repository root:  .venv/bin/python bench/decode.py [count] [repeats]
The Bandwidth SDK rows need:   .venv/bin/pip install bandwidth-sdk  (skipped if missing)
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from msgspec import field

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consumer.cloudevents import CloudEvent, MessageDecoder
from consumer.events import EventDecoder, RecordingAvailable, RecordingEvent


def _plain(model: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """The reference: the event model's fields, names and options, strict types, no tolerance."""
    config = model.__struct_config__
    fields = [
        (f.name, f.type, field(default=f.default, name=f.encode_name))
        for f in msgspec.structs.fields(model)
        if f.name != "malformed_raw"  # ours alone: what the lenient second pass found
    ]
    return msgspec.defstruct(
        f"Plain{model.__name__}",
        fields,
        frozen=True,
        kw_only=True,
        gc=False,
        tag=config.tag,
        tag_field=config.tag_field,
    )


PlainRecordingAvailable = _plain(RecordingAvailable)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payloads(count: int) -> list[bytes]:
    """`count` realistic, fully populated callbacks (~900 bytes) with varied ids and times."""
    rng = random.Random(3)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for _ in range(count):
        account = str(rng.randrange(1_000_000, 9_999_999))
        call = f"c-{uuid.UUID(int=rng.getrandbits(128))}"
        recording = f"r-{uuid.UUID(int=rng.getrandbits(128))}"
        start = base + timedelta(seconds=rng.uniform(0, 3e7))
        length = timedelta(milliseconds=rng.randrange(500, 3_600_000))
        call_url = f"https://voice.bandwidth.com/api/v2/accounts/{account}/calls/{call}"
        event = {
            "eventType": "recordingAvailable",
            "eventTime": _iso(start + length + timedelta(seconds=2)),
            "accountId": account,
            "applicationId": str(uuid.UUID(int=rng.getrandbits(128))),
            "from": f"+1{rng.randrange(2_000_000_000, 9_999_999_999)}",
            "to": f"+1{rng.randrange(2_000_000_000, 9_999_999_999)}",
            "direction": rng.choice(["inbound", "outbound"]),
            "callId": call,
            "callUrl": call_url,
            "parentCallId": f"c-{uuid.UUID(int=rng.getrandbits(128))}",
            "recordingId": recording,
            "mediaUrl": f"{call_url}/recordings/{recording}/media",
            "enqueuedTime": _iso(start - timedelta(seconds=1)),
            "startTime": _iso(start),
            "endTime": _iso(start + length),
            "duration": f"PT{length.total_seconds():.3f}S",
            "fileFormat": rng.choice(["wav", "mp3"]),
            "channels": rng.choice([1, 2]),
            "tag": f"campaign-{rng.randrange(10_000)}",
            "status": "complete",
            "transferCallerId": f"+1{rng.randrange(2_000_000_000, 9_999_999_999)}",
            "transferTo": f"+1{rng.randrange(2_000_000_000, 9_999_999_999)}",
        }
        out.append(json.dumps(event, separators=(",", ":")).encode())
    return out


ATTRIBUTES = {
    "specversion": "1.0",
    "source": "https://ingress.example.com/bandwidth/voice",
    "type": "com.bandwidth.voice.recordingAvailable",
    "time": "2026-11-27T10:15:31.123Z",
}
STRUCTURED_HEADERS = (("content-type", b"application/cloudevents+json; charset=utf-8"),)


def structured(callbacks: list[bytes]) -> list[bytes]:
    """Each callback as the `data` of a structured-mode envelope, as a gateway writes it."""
    head = msgspec.json.encode(ATTRIBUTES)[:-1]
    return [
        head + b',"id":"' + str(uuid.UUID(int=n)).encode() + b'",'
        b'"datacontenttype":"application/json","data":' + callback + b"}"
        for n, callback in enumerate(callbacks)
    ]


def binary_headers(n: int) -> tuple[tuple[str, bytes], ...]:
    """Binary mode's headers for the n-th event: ce_* attributes and the data's content type."""
    ce = ATTRIBUTES | {"id": str(uuid.UUID(int=n))}
    return (
        *((f"ce_{name}", value.encode()) for name, value in ce.items()),
        ("content-type", b"application/json"),
    )


def envelope_rates(data: list[bytes], repeats: int) -> dict[str, tuple[float, float]]:
    """(events/s, bytes/s) of the worker's decoder on raw, structured and binary messages.

    Rounds alternate between the rows, each row keeping its best, so a busy machine slows all
    rows alike instead of whichever ran during the busy spell.
    """
    raw, envelopes = MessageDecoder("raw").decode, MessageDecoder("cloudevents").decode
    wrapped = structured(data)
    headers = [binary_headers(n) for n in range(len(data))]

    def raw_row() -> None:
        for value in data:
            raw(value, ())

    def structured_row() -> None:
        for value in wrapped:
            envelopes(value, STRUCTURED_HEADERS)

    def binary_row() -> None:
        for value, ce_headers in zip(data, headers, strict=True):
            envelopes(value, ce_headers)

    header_bytes = sum(len(k) + len(v) for h in headers for k, v in h)
    rows: dict[str, tuple[Callable[[], None], int]] = {
        "raw": (raw_row, sum(map(len, data))),
        "CloudEvents structured": (structured_row, sum(map(len, wrapped))),
        "CloudEvents binary": (binary_row, sum(map(len, data)) + header_bytes),
    }
    best = dict.fromkeys(rows, float("inf"))
    for _ in range(repeats):
        for name, (run, _) in rows.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: (len(data) / best[name], size / best[name]) for name, (_, size) in rows.items()}


class _DataOnly(msgspec.Struct, gc=False):
    """An envelope of which msgspec keeps only `data`: every attribute is scanned and skipped."""

    data: RecordingEvent


class _Whole(CloudEvent, frozen=True, kw_only=True, gc=False):
    """An envelope as the decoder reads one in structured mode: attributes and `data`."""

    data: RecordingEvent


def floors(data: list[bytes], repeats: int) -> dict[str, float]:
    """Nanoseconds per event of what no envelope decoder avoids, rounds interleaved as above:
    msgspec alone on the callback, on an envelope keeping only `data` and on the whole
    envelope; and a bare Python pass over binary mode's headers."""
    wrapped = structured(data)
    headers = [binary_headers(n) for n in range(len(data))]

    def each(decode: Callable[[bytes], object], values: list[bytes]) -> Callable[[], None]:
        def run() -> None:
            for value in values:
                decode(value)

        return run

    def header_pass() -> None:
        for message_headers in headers:
            for _name, _value in message_headers:
                pass

    rows = {
        "msgspec: callback": each(msgspec.json.Decoder(RecordingEvent).decode, data),
        "msgspec: envelope, data only": each(msgspec.json.Decoder(_DataOnly).decode, wrapped),
        "msgspec: whole envelope": each(msgspec.json.Decoder(_Whole).decode, wrapped),
        "Python: pass over 6 headers": header_pass,
    }
    best = dict.fromkeys(rows, float("inf"))
    for _ in range(repeats):
        for name, run in rows.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: seconds / len(data) * 1e9 for name, seconds in best.items()}


def best_rate(decode: Callable[[bytes], Any], data: list[bytes], repeats: int) -> float:
    """Events per second of the fastest of `repeats` full passes over `data`."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for item in data:
            decode(item)
        best = min(best, time.perf_counter() - start)
    return len(data) / best


def contenders() -> dict[str, Callable[[bytes], Any] | None]:
    """Name to decode function; None marks a row whose library is not installed."""
    ours = EventDecoder().decode
    plain = msgspec.json.Decoder(PlainRecordingAvailable).decode
    rows: dict[str, Callable[[bytes], Any] | None] = {
        "ours (EventDecoder)": ours,
        "plain msgspec Struct": plain,
        "json.loads (dicts)": json.loads,
        "SDK from_json": None,
        "SDK model_validate_json": None,
    }
    try:
        from bandwidth.models.recording_available_callback import RecordingAvailableCallback
    except ImportError:
        return rows
    rows["SDK from_json"] = RecordingAvailableCallback.from_json
    rows["SDK model_validate_json"] = RecordingAvailableCallback.model_validate_json
    return rows


def main() -> None:
    """Generate payloads, time every contender, print rates and the goal ratios."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    data = payloads(count)
    mean_size = sum(map(len, data)) / len(data)
    print(f"{count} payloads, mean {mean_size:.0f} bytes, best of {repeats} passes")
    rates: dict[str, float] = {}
    for name, decode in contenders().items():
        if decode is None:
            print(f"{name:26} skipped: pip install bandwidth-sdk")
            continue
        rates[name] = best_rate(decode, data, repeats)
        print(f"{name:26} {rates[name]:>12,.0f} events/s")
    ours = rates["ours (EventDecoder)"]
    goals = [
        ("plain msgspec Struct", "ours / plain Struct", 0.8, "within 25%: >= 0.80"),
        ("SDK from_json", "ours / SDK from_json", 10.0, ">= 10x"),
        ("SDK model_validate_json", "ours / SDK model_validate_json", 4.0, ">= 4x"),
    ]
    for row, label, target, text in goals:
        if row in rates:
            ratio = ours / rates[row]
            verdict = "ok" if ratio >= target else "MISSED"
            print(f"{label:32} {ratio:6.2f}  (goal {text}: {verdict})")

    print(f"\nCloudEvents against raw callbacks (MessageDecoder; best of {repeats * 4} rounds)")
    envelope = envelope_rates(data, repeats * 4)
    for name, (events, size) in envelope.items():
        print(f"{name:26} {events:>12,.0f} events/s {size / 1e6:>8,.1f} MB/s")
    raw_events, raw_bytes = envelope["raw"]
    for name in ("CloudEvents structured", "CloudEvents binary"):
        events, size = envelope[name]
        verdict = "ok" if events / raw_events >= 0.9 else "MISSED"
        print(
            f"{name.split()[1] + ' / raw':32} {events / raw_events:6.2f} per event "
            f"(goal within 10%: >= 0.90: {verdict}), {size / raw_bytes:.2f} per byte"
        )

    print(f"\nWhat no envelope decoder avoids (best of {repeats * 4} rounds)")
    parts = floors(data, repeats * 4)
    for name, nanoseconds in parts.items():
        print(f"{name:32} {nanoseconds:8.0f} ns/event")
    callback = parts["msgspec: callback"]
    for name in ("msgspec: envelope, data only", "msgspec: whole envelope"):
        print(f"{'callback / ' + name.split(': ')[1]:32} {callback / parts[name]:6.2f} per event")


if __name__ == "__main__":
    main()
