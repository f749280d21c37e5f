"""How long giving up a partition can take, so the broker's rebalance timeout can cover it.

A revoked partition's handlers get ``engine.shutdown_grace`` seconds; then those still running
are cancelled and get `CANCELLED_WAIT` seconds to unwind, and the finished offsets are committed
within `COMMIT_WAIT` seconds. The member rejoins only after all of that, so the rebalance
timeout (``kafka.max_poll_interval_ms``) must be longer, or the broker evicts the member and
hands its partitions on while its handlers still run.
"""

from __future__ import annotations

CANCELLED_WAIT = 5.0
"""Seconds cancelled handlers get to unwind before the partition is handed over regardless."""
COMMIT_WAIT = 5.0
"""Seconds the hand-over commit may take; past it the next owner redoes those messages."""


def longest_handover(shutdown_grace: float) -> float:
    """The most seconds a member can spend giving up its partitions."""
    return shutdown_grace + CANCELLED_WAIT + COMMIT_WAIT
