"""Structured logging, configured once at start-up: JSON lines for machines, colours for people.

The standard library's records (aiokafka's, asyncio's, warnings) go through the same pipeline,
and a problem repeating during an outage is written once per interval, with a count.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any

import msgspec
import structlog

from consumer.config import LoggingSettings
from consumer.engine.printable import escape_log_fields

_encode = msgspec.json.Encoder(enc_hook=repr).encode


REPEAT_INTERVAL = 10.0
"""Seconds during which an identical warning or error is written only once."""
_COLLAPSED = frozenset({"warning", "error", "critical"})
_MAX_TRACKED = 1_000
"""Distinct lines remembered per interval; more (per-message warnings) are written as they come."""


def _dumps(obj: Any, **_: Any) -> bytes:
    # msgspec encodes the event dict about twice as fast as json.dumps; per-message lines
    # are the worker's first throughput ceiling.
    return _encode(obj)


def _dumps_text(obj: Any, **_: Any) -> str:
    return _encode(obj).decode()


class Repeats:
    """A processor writing an identical warning or error at most once per interval.

    The next time such a line is written it carries ``repeated``: how many were held back.
    """

    def __init__(self, interval: float = REPEAT_INTERVAL) -> None:
        self._interval = interval
        self._swept = time.monotonic()
        self._lines: dict[str, list[float]] = {}
        """Line -> [when it was last written, how many were held back since]."""

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("level") not in _COLLAPSED:
            return event
        now = time.monotonic()
        if now - self._swept >= self._interval:
            self._swept = now
            self._lines = {
                key: seen
                for key, seen in self._lines.items()
                if seen[1] or now - seen[0] < self._interval
            }
        key = repr([item for item in event.items() if not item[0].startswith("_")])
        seen = self._lines.get(key)
        if seen is not None:
            if now - seen[0] < self._interval:
                seen[1] += 1
                raise structlog.DropEvent
            if seen[1]:
                event["repeated"] = int(seen[1])
        if seen is not None or len(self._lines) < _MAX_TRACKED:
            self._lines[key] = [now, 0]
        return event


def configure_logging(settings: LoggingSettings) -> None:
    """Set up structlog for the whole process; call once, before the first logger is used."""
    tty = sys.stdout.isatty()
    use_json = settings.format == "json" or (settings.format == "auto" and not tty)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        Repeats(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Any]
    factory: Any
    # Tracebacks without local variables: a handler's locals may hold credentials.
    if use_json:
        tracebacks = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        renderer = [
            structlog.processors.ExceptionRenderer(tracebacks),
            structlog.processors.JSONRenderer(_dumps),
        ]
        factory = structlog.BytesLoggerFactory()
    else:
        renderer = [
            # Formatted here, not by the renderer, so its text is escaped like the fields.
            structlog.processors.format_exc_info,
            escape_log_fields,
            structlog.dev.ConsoleRenderer(
                colors=tty, exception_formatter=structlog.dev.plain_traceback
            ),
        ]
        factory = structlog.PrintLoggerFactory()
    structlog.configure(
        processors=shared + renderer,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.level.upper()]
        ),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    # The standard library's records are rendered to text, not bytes.
    foreign = [*renderer[:-1], structlog.processors.JSONRenderer(_dumps_text)]
    _route_standard_library(settings, shared, foreign if use_json else renderer)


def _route_standard_library(
    settings: LoggingSettings, shared: list[Any], renderer: list[Any]
) -> None:
    """aiokafka, asyncio and Python's warnings log through `logging`: give their records our
    processors and stream (stdout), so an outage reads like the rest of the log."""
    handler = _StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries' info lines are chatter; their warnings and errors are worth the operator's time.
    level = logging.getLevelNamesMapping()[settings.level.upper()]
    root.setLevel(max(level, logging.WARNING))
    logging.captureWarnings(True)


class _StreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes nothing for records `Repeats` drops (DropEvent is not an Exception: it would
    escape logging's own error handling)."""

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(structlog.DropEvent):
            super().emit(record)
