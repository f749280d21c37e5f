"""What became of a message: the outcome names the engine counts, logs and reports."""

from __future__ import annotations

from typing import Final, Literal, get_args

Outcome = Literal[
    "handled",
    "unrouted",
    "duplicate",
    "retried",
    "dead_lettered",
    "undecodable",
    "skipped",
]
"""``handled``: every handler of the route returned. ``unrouted``: no route named a handler.
``duplicate``: a repeat of an event handled moments ago, dropped. ``retried``: an attempt
failed and another is scheduled (counted per retry, not per message). ``dead_lettered``:
attempts ran out or a handler raised PermanentFailure. ``undecodable``: not a usable event,
dead-lettered. ``skipped``: passed over on purpose, committed: every handler of the route
raised Skipped, or a Bandwidth callback that is not a recording event."""

OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)
