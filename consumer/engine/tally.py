"""What a worker did: counted on the hot path as dict increments, read by metrics and summaries.

Statuses and event types come from whoever produced the message: they are folded into the
known values and `other` as they are counted, so distinct values (of any length) add no keys.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from consumer.engine.observers import AttemptDurations, Unmeasured
from consumer.events import KNOWN_EVENT_TYPES, Status
from consumer.outcomes import Outcome

OTHER: Final = "other"
"""What statuses and event types outside the known set are counted as: keeps keys bounded."""
KNOWN_STATUSES: Final = frozenset(str(status) for status in Status)


@dataclass(slots=True)
class Tally:
    """What a worker did, for its end-of-run summary and for tests."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    routed: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(status label, handler) -> events that handler finished; unknown statuses are `other`."""
    messages: dict[tuple[Outcome, str, str], int] = field(default_factory=dict)
    """(outcome, status, event type) -> messages finished, unknown values folded; no retries."""
    skipped_by: Counter[str] = field(default_factory=Counter)
    """Handler -> events it passed over on purpose (raised Skipped)."""
    retries: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    """Reason (undecodable, handler_failed) -> messages dead-lettered."""
    durations: AttemptDurations = field(default_factory=Unmeasured)
    commits: int = 0
    commit_failures: int = 0
    rebalances: int = 0

    def finished(self, outcome: Outcome, status: str | None, event_type: str | None) -> None:
        self.outcomes[outcome] += 1
        if outcome == "retried":
            return
        key = (
            outcome,
            status if status in KNOWN_STATUSES else OTHER,
            event_type if event_type in KNOWN_EVENT_TYPES else OTHER,
        )
        messages = self.messages
        messages[key] = messages.get(key, 0) + 1

    def handled_by(self, status: str | None, handler: str) -> None:
        """`handler` finished an event of `status`."""
        self.routed[(status if status in KNOWN_STATUSES else OTHER, handler)] += 1
