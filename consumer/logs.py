"""Structured logging, configured once at start-up: JSON lines for machines, colours for people."""

from __future__ import annotations

import logging
import sys
from typing import Any

import msgspec
import structlog

from consumer.config import LoggingSettings
from consumer.printable import escape_log_fields

_encode = msgspec.json.Encoder(enc_hook=repr).encode


def _dumps(obj: Any, **_: Any) -> bytes:
    # msgspec encodes the event dict about twice as fast as json.dumps; per-message lines
    # are the worker's first throughput ceiling.
    return _encode(obj)


def configure_logging(settings: LoggingSettings) -> None:
    """Set up structlog for the whole process; call once, before the first logger is used."""
    tty = sys.stdout.isatty()
    use_json = settings.format == "json" or (settings.format == "auto" and not tty)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
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
    # aiokafka logs through the standard library: its warnings go to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
