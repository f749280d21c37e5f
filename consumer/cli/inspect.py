"""``recording-consumer inspect``: how each JSON line would decode and which handlers it reaches.

Operators feed it dead-letter values or captured callbacks to see what the worker sees.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import msgspec

from consumer.cli.subcommands import Subcommands
from consumer.engine.intake import Intake, OtherCallback, Undecodable
from consumer.errors import ConfigError
from consumer.observability.printable import print_escaped
from consumer.settings.config import Settings


def add_command(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    inspect = sub.add_parser(
        "inspect", parents=[common], help="show how JSON lines decode and where they route"
    )
    inspect.add_argument("file", nargs="?", default="-", help="JSON lines, or - for stdin")
    inspect.set_defaults(command=command)


def command(args: argparse.Namespace, settings: Settings) -> int:
    if args.file == "-":
        return inspect_lines(sys.stdin.buffer, settings, sys.stdout)
    try:
        with Path(args.file).open("rb") as lines:
            return inspect_lines(lines, settings, sys.stdout)
    except OSError as exc:
        raise ConfigError(f"cannot read {args.file}: {exc.strerror}") from None


class _Line(msgspec.Struct, frozen=True):
    """A line given to inspect, as the record the worker would have fetched."""

    topic: str
    offset: int
    value: bytes
    partition: int = 0
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = 0


def inspect_lines(lines: Iterable[bytes], settings: Settings, out: TextIO) -> int:
    """Print one verdict per non-blank line; 1 if any line failed to decode, else 0.

    Each line goes through the worker's own intake, so the verdict is the worker's. What the
    line holds is printed with its controls escaped: it may come from anyone who can produce.
    """
    names = {name for route in settings.routes.values() for name in route}
    intake = Intake(settings, {name: name for name in names})
    failed = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        work = intake(_Line(settings.kafka.topic, number, line))
        if isinstance(work, Undecodable):
            failed += 1
            error = work.error
            print_escaped(f"{number}: undecodable: {error.reason} (path {error.path or '$'})", out)
            continue
        if isinstance(work, OtherCallback):
            kind = "other event type" if work.known else "unknown event type"
            policy = work.policy
            print_escaped(f"{number}: skipped ({kind} {work.event_type!r}, policy {policy})", out)
            continue
        event = work.event
        summary = " ".join(f"{k}={v}" for k, v in event.summary().items())
        handlers = ", ".join(name for name, _ in work.route) or "(none)"
        default = "" if event.status in settings.routes else " (default route)"
        envelope = "" if work.envelope is None else f" [CloudEvent id={work.envelope.id}]"
        print_escaped(f"{number}: {summary}{envelope} -> {handlers}{default}", out)
        if event.malformed:
            for field in event.malformed:
                raw = event.raw_value(field)
                print_escaped(f"    malformed {field}: {raw!r} kept as text", out)
    return 1 if failed else 0
