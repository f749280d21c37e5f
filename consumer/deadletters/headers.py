"""The dead-letter header schema: what the engine writes beside a failed message, and how
the tools (``dlq show``, ``dlq replay``) and the testing kit read it back.

The error message in the headers is the exception's text with the values of `Secret`s blanked
(`consumer.redaction`). Handlers must still not put other credentials in exception messages:
they end up in the dead-letter topic for anyone who reads it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from consumer.errors import DecodeError
from consumer.handler_api import Record
from consumer.redaction import error_message

PREFIX = "dlq."
TOPIC = "dlq.topic"
PARTITION = "dlq.partition"
OFFSET = "dlq.offset"
TIMESTAMP = "dlq.timestamp"
GROUP = "dlq.group"
HANDLER = "dlq.handler"
ERROR_CLASS = "dlq.error.class"
ERROR_MESSAGE = "dlq.error.message"
ERROR_PATH = "dlq.error.path"
ATTEMPTS = "dlq.attempts"
FIRST_FAILURE = "dlq.failure.first"
LAST_FAILURE = "dlq.failure.last"
REPLAYED_FROM = "dlq.replayed_from"
"""Set by ``dlq replay`` on a republished message: ``<dlq topic>/<partition>/<offset>``."""
VALUE_TOO_LARGE = "dlq.value.too_large"
"""On a reference record, the original value's size in bytes: the value did not fit in the
dead-letter topic and is left out (empty); ``dlq replay`` refetches it from the source offset."""
HEADERS_DROPPED = "dlq.headers_dropped"
"""On a reference record, the original headers' size in bytes (names and values): they did not
fit in the dead-letter topic and are left out; the source record still has them."""
KEY_DROPPED = "dlq.key_dropped"
"""On a bare reference record (value, headers and key left out, only ``dlq.*`` headers kept, so
that it fits whatever the producer sent), the original key's size in bytes."""


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a message is dead-lettered."""

    handler: str | None
    """None when the message could not be decoded, so no handler saw it."""
    error_class: str
    message: str
    path: str | None
    """The JSON path a decode error points at, if any."""
    attempts: int
    first_failure: float
    last_failure: float
    """Both in seconds since the epoch."""

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        *,
        handler: str | None,
        attempts: int = 1,
        first_failure: float | None = None,
        last_failure: float | None = None,
    ) -> Failure:
        """The failure `exc` describes; times default to now."""
        last = time.time() if last_failure is None else last_failure
        return cls(
            handler=handler,
            error_class=type(exc).__name__,
            message=exc.reason if isinstance(exc, DecodeError) else error_message(exc),
            path=exc.path if isinstance(exc, DecodeError) else None,
            attempts=attempts,
            first_failure=last if first_failure is None else first_failure,
            last_failure=last,
        )


def dead_letter_headers(
    record: Record, group: str, failure: Failure, max_bytes: int
) -> list[tuple[str, bytes | None]]:
    """The original headers, then the ``dlq.*`` ones describing where it came from and why."""
    return [*original_headers(record), *dlq_headers(record, group, failure, max_bytes)]


def original_headers(record: Record) -> list[tuple[str, bytes | None]]:
    """The record's headers less incoming ``dlq.*`` ones: whoever produced the message could
    have forged them, and a forged ``dlq.handler`` or ``dlq.error.path`` would steer
    ``dlq replay --handler`` and ``dlq show`` where ours leave that header out. Values may be
    None (a header without a value), which Kafka takes back as it is; a name is made UTF-8
    encodable (the producer refuses one that is not, and would for ever)."""
    return [
        (name if name.isascii() else _encodable(name), v)
        for name, v in record.headers
        if not name.startswith(PREFIX)
    ]


def _encodable(name: str) -> str:
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def dlq_headers(
    record: Record, group: str, failure: Failure, max_bytes: int
) -> list[tuple[str, bytes]]:
    """The ``dlq.*`` headers describing where the record came from and why it failed."""
    ours: list[tuple[str, str | bytes]] = [
        (TOPIC, record.topic),
        (PARTITION, str(record.partition)),
        (OFFSET, str(record.offset)),
        (TIMESTAMP, str(record.timestamp)),
        (GROUP, group),
    ]
    if failure.handler is not None:
        ours.append((HANDLER, failure.handler))
    ours += [
        (ERROR_CLASS, failure.error_class),
        (ERROR_MESSAGE, truncate_utf8(failure.message, max_bytes)),
    ]
    if failure.path is not None:
        ours.append((ERROR_PATH, failure.path))
    ours += [
        (ATTEMPTS, str(failure.attempts)),
        (FIRST_FAILURE, iso_utc(failure.first_failure)),
        (LAST_FAILURE, iso_utc(failure.last_failure)),
    ]
    return [(name, v if isinstance(v, bytes) else v.encode()) for name, v in ours]


def truncate_utf8(text: str, max_bytes: int) -> bytes:
    """`text` as UTF-8, cut to at most `max_bytes` without splitting a character."""
    return text.encode()[:max_bytes].decode(errors="ignore").encode()


def iso_utc(seconds: float) -> str:
    """``2026-11-27T10:15:30.123Z``."""
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def dlq_fields(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    """The ``dlq.*`` headers by name; the last wins, as ours come after the original ones.

    A null value counts as absent; `malformed_header` says whether there was one.
    """
    return {
        k: v.decode(errors="replace") for k, v in headers if k.startswith(PREFIX) and v is not None
    }


_NUMBERS = frozenset(
    {PARTITION, OFFSET, TIMESTAMP, ATTEMPTS, VALUE_TOO_LARGE, HEADERS_DROPPED, KEY_DROPPED}
)
_NUMBER = re.compile(r"-?[0-9]{1,19}")


def malformed_header(headers: Sequence[tuple[str, bytes | None]]) -> str | None:
    """What makes these ``dlq.*`` headers unlike any the engine writes, or None.

    Anyone who can write to the dead-letter topic can forge them: a null value, one that is not
    UTF-8, or a number that is not one is named here so the tools can pass the record over.
    """
    for name, value in headers:
        if not name.startswith(PREFIX):
            continue
        if value is None:
            return f"header {name} is null"
        try:
            text = value.decode()
        except UnicodeDecodeError:
            return f"header {name} is not UTF-8"
        if name in _NUMBERS and not _NUMBER.fullmatch(text):
            return f"header {name} is not a number: {text[:40]!r}"
    return None
