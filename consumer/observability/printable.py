"""Control characters made visible in text shown on a terminal.

Event fields and Kafka headers come from whoever produced the message: raw, an escape sequence
in them could rewrite the operator's screen, hide lines or fake new ones.
"""

from __future__ import annotations

import re
from typing import Any, TextIO

_MARKS = r"\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
"""DEL, the C1 controls, and the bidirectional marks and overrides."""
_CONTROLS = re.compile(rf"[\x00-\x1f{_MARKS}]")
_CONTROLS_BUT_NEWLINE = re.compile(rf"[\x00-\x09\x0b-\x1f{_MARKS}]")


_JSON_MARKS = re.compile(
    rb"\x7f|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xaa-\xae]|\xe2\x81[\xa6-\xa9]"
)
"""`_MARKS` in UTF-8: what JSON leaves raw among the controls."""


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control character written as a ``\\xNN`` or ``\\uNNNN`` escape."""
    pattern = _CONTROLS_BUT_NEWLINE if keep_newlines else _CONTROLS
    return pattern.sub(_escape, text)


def escape_json_marks(line: bytes) -> bytes:
    """A JSON line with DEL, the C1 controls and the bidi marks as ``\\uNNNN``: the same JSON.

    JSON escapes only the C0 controls; the rest would reach a terminal showing the log raw.
    """
    if line.isascii() and b"\x7f" not in line:
        return line  # nearly every line: no per-character work
    return _JSON_MARKS.sub(_escape_json, line)


def _escape_json(match: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % ord(match[0].decode())


def print_escaped(text: str, file: TextIO) -> None:
    """Print `text` with its controls escaped: what every command line tool writes goes here."""
    print(escape_controls(text), file=file)


def escape_log_fields(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: escape controls in every string value (a traceback keeps its lines).

    Other values are rendered with repr, which escapes them already.
    """
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = escape_controls(value, keep_newlines=key == "exception")
    return event_dict
