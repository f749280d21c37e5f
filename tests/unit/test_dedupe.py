"""The window of recent successes behind duplicate suppression: a pure unit."""

from __future__ import annotations

from consumer.engine.dedupe import KEPT_WHOLE, RecentlyHandled, fingerprint


def test_oldest_success_leaves_the_window_first() -> None:
    """With room for two, a third success evicts the first and keeps the others."""
    recent = RecentlyHandled(2)
    for key in ("a", "b", "c"):
        recent.add(key)
    assert "a" not in recent
    assert "b" in recent
    assert "c" in recent


def test_size_zero_remembers_nothing() -> None:
    """Duplicate suppression switched off: nothing is ever reported as seen."""
    recent = RecentlyHandled(0)
    recent.add("a")
    assert "a" not in recent


def test_a_repeat_is_byte_identical_and_long_values_are_kept_as_digests() -> None:
    """Short values are compared whole, long ones by digest; a one-byte change is no repeat,
    and a short value equal to a long value's digest bytes is not taken for it."""
    recent = RecentlyHandled(10)
    short, long = b'{"recordingId":"r-1"}', b"x" * (KEPT_WHOLE + 1)
    recent.add(fingerprint(short))
    recent.add(fingerprint(long))
    assert fingerprint(bytes(short)) in recent
    assert fingerprint(short.replace(b"1", b"2")) not in recent
    assert fingerprint(b"x" * KEPT_WHOLE + b"x") in recent
    assert fingerprint(b"y" + long[1:]) not in recent
    digest = fingerprint(long)
    assert isinstance(digest, tuple)
    assert fingerprint(digest[0]) not in recent
