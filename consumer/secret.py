"""A setting whose value must never be shown: not by check-config, a log line, or a traceback."""

from __future__ import annotations

from typing import Any

REDACTED = "**********"


class Secret:
    """A string kept out of ``repr``, ``str`` and JSON; `reveal()` is the one way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))


def decode_secret(kind: type, value: Any) -> Any:
    """msgspec ``dec_hook``: settings typed `Secret` are given as strings."""
    if kind is Secret:
        if isinstance(value, str):
            return Secret(value)
        raise TypeError(f"Expected `str`, got `{type(value).__name__}`")
    raise NotImplementedError(f"cannot decode {kind!r}")


def encode_secret(obj: Any) -> Any:
    """msgspec ``enc_hook``: a `Secret` is written as a mask."""
    if isinstance(obj, Secret):
        return REDACTED
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")
