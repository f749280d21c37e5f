"""What a worker did: counted on the hot path as dict increments, read by metrics and summaries."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from consumer.observability.metrics import MAX_RAW_SERIES, Durations, message_labels
from consumer.outcomes import Outcome


@dataclass(slots=True)
class Tally:
    """What a worker did, for its end-of-run summary and for tests."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    routed: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(status, handler) -> events that handler finished."""
    messages: dict[tuple[str, str | None, str | None], int] = field(default_factory=dict)
    """(outcome, status, event type) -> messages, for the metrics, which fold the values."""
    retries: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    """Reason (undecodable, handler_failed) -> messages dead-lettered."""
    durations: Durations = field(default_factory=Durations)
    commits: int = 0
    commit_failures: int = 0
    rebalances: int = 0

    def finished(self, outcome: Outcome, status: str | None, event_type: str | None) -> None:
        self.outcomes[outcome] += 1
        if outcome == "retried":
            return
        # Counted as they come (the hot path); folded into label values only when scraped.
        messages = self.messages
        key: tuple[str, str | None, str | None] = (outcome, status, event_type)
        count = messages.get(key)
        if count is None and len(messages) >= MAX_RAW_SERIES:
            key = message_labels(*key)  # odd values keep coming: fold now, stay bounded
            count = messages.get(key)
        messages[key] = 1 if count is None else count + 1
