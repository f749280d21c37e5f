"""What a msgspec error is about: its reason and the JSON path of the value at fault.

msgspec says where only in the message (``Expected `int`, got `str` - at `$.a[0]` ``), and names
a missing or unknown field only there too; this module is the one place that reads that text.
tests/unit/test_msgspec_errors.py fails if the installed msgspec words its errors otherwise.
"""

from __future__ import annotations

import re

import msgspec

_AT = " - at `"
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")


def reason_and_path(error: BaseException) -> tuple[str, str | None]:
    """`error`'s message without its location, and the JSON path (``$.a[0]``) it names, or
    None where msgspec named none (the document's root)."""
    message = str(error)
    reason, sep, tail = message.rpartition(_AT)
    if not sep or not tail.startswith("$") or not tail.endswith("`"):
        return message, None
    return reason, tail[:-1]


def error_path(error: BaseException) -> str | None:
    """The JSON path `error` names, or None."""
    return reason_and_path(error)[1]


def located(reason: str, path: str) -> msgspec.ValidationError:
    """A ValidationError about the value at `path` (``$.a.b``), read back as msgspec's own."""
    return msgspec.ValidationError(f"{reason}{_AT}{path}`")


def missing_field(reason: str) -> str | None:
    """The field a reason says is required but absent, or None."""
    found = _MISSING.match(reason)
    return found["field"] if found else None


def unknown_field(reason: str) -> str | None:
    """The field a reason says the object may not contain, or None."""
    found = _UNKNOWN.match(reason)
    return found["field"] if found else None
