"""What a worker did: counted on the hot path as dict increments, read by metrics and summaries.

Statuses and event types come from whoever produced the message: they are folded into the
known values and `other` as they are counted, so distinct values (of any length) add no keys.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from consumer.observability.metrics import Durations, message_labels, status_label
from consumer.outcomes import Outcome


@dataclass(slots=True)
class Tally:
    """What a worker did, for its end-of-run summary and for tests."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    routed: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(status label, handler) -> events that handler finished; unknown statuses are `other`."""
    messages: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(outcome, status, event type) label values -> messages, unknown values folded."""
    skipped_by: Counter[str] = field(default_factory=Counter)
    """Handler -> events it passed over on purpose (raised Skipped)."""
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
        key = message_labels(outcome, status, event_type)
        messages = self.messages
        messages[key] = messages.get(key, 0) + 1

    def handled_by(self, status: str | None, handler: str) -> None:
        """`handler` finished an event of `status`."""
        self.routed[(status_label(status), handler)] += 1
