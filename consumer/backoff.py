"""How long to wait before trying again: the one exponential backoff type.

Handler retries (`RetryPolicy.backoff`), dead-letter publishing, the start-up wait for Kafka and
the ingress's reconnects and spool forwarding are instances of `Backoff`, each with its own
constants and jitter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Jitter = Literal["full", "half", "none"]
"""full: a uniform draw below the ceiling (callers that failed together spread out most);
half: half the ceiling fixed, half drawn (spread out, never back-to-back); none: the ceiling."""

_MAX_DOUBLINGS = 64
"""Past this the ceiling is `maximum` anyway; it keeps 2**n finite for callers that never stop."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: `initial` seconds after the first failure, doubling after each one,
    capped at `maximum`, with `jitter`."""

    initial: float
    maximum: float
    jitter: Jitter

    def delay(self, failures: int, rand: random.Random | None = None) -> float:
        """Seconds to wait after the `failures`-th failure in a row (1 for the first)."""
        ceiling = min(self.maximum, self.initial * 2.0 ** min(failures - 1, _MAX_DOUBLINGS))
        uniform = rand.uniform if rand is not None else random.uniform
        if self.jitter == "full":
            return uniform(0, ceiling)
        if self.jitter == "half":
            return ceiling / 2 + uniform(0, ceiling / 2)
        return ceiling
