"""``recording-consumer inspect``: how each JSON line would decode and which handlers it reaches.

Operators feed it dead-letter values or captured callbacks to see what the worker sees.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

from consumer.config import Settings
from consumer.engine.routing import Router
from consumer.errors import DecodeError
from consumer.events import EventDecoder, OtherEvent, UnknownEvent


def inspect_lines(lines: Iterable[bytes], settings: Settings, out: TextIO) -> int:
    """Print one verdict per non-blank line; 1 if any line failed to decode, else 0."""
    decoder = EventDecoder()
    names = {name for route in settings.routes.values() for name in route}
    router = Router(settings.routes, {name: name for name in names})
    failed = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = decoder.decode(line)
        except DecodeError as exc:
            failed += 1
            print(f"{number}: undecodable: {exc.reason} (path {exc.path or '$'})", file=out)
            continue
        if isinstance(event, OtherEvent | UnknownEvent):
            kind = "other event type" if isinstance(event, OtherEvent) else "unknown event type"
            policy = (
                settings.events.other_event_types
                if isinstance(event, OtherEvent)
                else settings.events.unknown_event_types
            )
            print(f"{number}: skipped ({kind} {event.event_type!r}, policy {policy})", file=out)
            continue
        summary = " ".join(f"{k}={v}" for k, v in event.summary().items())
        handlers = ", ".join(name for name, _ in router.route(event.status)) or "(none)"
        default = "" if event.status in settings.routes else " (default route)"
        print(f"{number}: {summary} -> {handlers}{default}", file=out)
        if event.malformed:
            for field in event.malformed:
                print(f"    malformed {field}: {event.raw_value(field)!r} kept as text", file=out)
    return 1 if failed else 0
