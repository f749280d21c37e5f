"""The window of recent successes behind duplicate suppression: a pure unit."""

from __future__ import annotations

from consumer.engine.dedupe import RecentlyHandled


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
