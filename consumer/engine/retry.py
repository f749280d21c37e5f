"""When to try a failed handler again: the policy's backoff (exponential, full jitter)."""

from __future__ import annotations

import random

from consumer.errors import PermanentFailure, RetryLater
from consumer.settings.config import RetryPolicy


def retry_delay(
    policy: RetryPolicy, attempt: int, error: BaseException, rand: random.Random | None = None
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None when no attempt should follow.

    Full jitter (a uniform draw below the exponential ceiling) keeps workers that failed together
    from retrying together. A delay named by the handler (a 429's Retry-After) is honoured as it
    is, capped at ``max_delay`` like everything else.
    """
    if isinstance(error, PermanentFailure) or attempt >= policy.max_attempts:
        return None
    if isinstance(error, RetryLater) and error.delay is not None:
        return min(max(error.delay, 0.0), policy.max_delay)
    return policy.backoff.delay(attempt, rand)
