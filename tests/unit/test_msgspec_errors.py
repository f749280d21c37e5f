"""msgspec's error messages, read by `consumer.msgspec_errors` (the one place that parses them):
written against msgspec 0.22.0, the version requirements.lock pins."""

from __future__ import annotations

from importlib.metadata import version

import msgspec
import pytest

from consumer.msgspec_errors import (
    error_path,
    located,
    missing_field,
    reason_and_path,
    unknown_field,
)

WRITTEN_AGAINST = "0.22.0"


class Inner(msgspec.Struct, forbid_unknown_fields=True):
    n: int


class Outer(msgspec.Struct, forbid_unknown_fields=True):
    items: list[Inner]
    name: str = ""


def failure(data: bytes) -> msgspec.ValidationError:
    with pytest.raises(msgspec.ValidationError) as raised:
        msgspec.json.decode(data, type=Outer)
    return raised.value


def test_the_installed_msgspec_words_its_errors_as_this_module_reads_them() -> None:
    """A wrong type, a missing field and an unknown one, nested in an array: the reason, the
    path and the field come out of msgspec's own messages. If an upgrade words them otherwise
    (or the version differs from the one this was checked against), this fails: check the
    messages again, then bump WRITTEN_AGAINST."""
    wrong = failure(b'{"items": [{"n": 1}, {"n": "x"}]}')
    assert reason_and_path(wrong) == ("Expected `int`, got `str`", "$.items[1].n")
    missing = failure(b'{"items": [{}]}')
    reason, path = reason_and_path(missing)
    assert (missing_field(reason), path) == ("n", "$.items[0]")
    unknown = failure(b'{"items": [], "extra": 1}')
    reason, path = reason_and_path(unknown)
    assert (unknown_field(reason), path) == ("extra", None)
    assert version("msgspec") == WRITTEN_AGAINST


def test_an_error_without_a_location_keeps_its_whole_message() -> None:
    """A document that is not JSON at all names no path: the message is the reason."""
    with pytest.raises(msgspec.DecodeError) as raised:
        msgspec.json.decode(b'{"items": [', type=Outer)
    assert reason_and_path(raised.value) == ("Input data was truncated", None)
    assert error_path(raised.value) is None
    assert missing_field("Expected `int`, got `str`") is None
    assert unknown_field("Expected `int`, got `str`") is None


def test_a_located_error_reads_back_like_msgspecs_own() -> None:
    """What the settings loader raises for a free-keyed table entry is read the same way."""
    error = located("Expected `str`, got `int`", "$.plugins.paths.audit")
    assert isinstance(error, msgspec.ValidationError)
    assert reason_and_path(error) == ("Expected `str`, got `int`", "$.plugins.paths.audit")
