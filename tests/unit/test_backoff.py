"""The one backoff type, and the three places that wait with it: pure units, no broker."""

from __future__ import annotations

import random

import pytest

from consumer.backoff import Backoff, Jitter
from consumer.deadletters import publisher
from consumer.kafka import startup
from consumer.settings.config import RetryPolicy


def test_the_start_up_wait_doubles_from_half_a_second_to_five() -> None:
    """No jitter: 0.5, 1, 2, 4 seconds, then 5 for as long as Kafka stays away."""
    delays = [startup.BACKOFF.delay(n) for n in range(1, 8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_dead_letter_retries_wait_at_least_half_the_doubling_ceiling() -> None:
    """Half jitter from 0.5 s to 30 s: each wait lies between half the ceiling and the ceiling,
    and the draws differ (no two workers retry in step)."""
    rand = random.Random(7)
    for failures, ceiling in [(1, 0.5), (2, 1.0), (6, 16.0), (7, 30.0), (50, 30.0)]:
        waits = [publisher.BACKOFF.delay(failures, rand) for _ in range(200)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert len(set(waits)) > 1


def test_handler_retries_draw_below_the_policys_ceiling() -> None:
    """A RetryPolicy's backoff is full jitter between 0 and initial_delay doubled per attempt,
    capped at max_delay: its public fields mean what they meant."""
    policy = RetryPolicy(initial_delay=0.25, max_delay=3.0)
    rand = random.Random(7)
    for attempt, ceiling in [(1, 0.25), (2, 0.5), (4, 2.0), (5, 3.0), (40, 3.0)]:
        delays = [policy.backoff.delay(attempt, rand) for _ in range(500)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling * 0.9
        assert min(delays) < ceiling * 0.1


@pytest.mark.parametrize("jitter", ["full", "half", "none"])
def test_a_caller_that_never_gives_up_gets_the_maximum_not_an_overflow(jitter: Jitter) -> None:
    """The ten-thousandth failure in a row still waits at most `maximum` seconds."""
    backoff = Backoff(0.5, 30.0, jitter)
    assert 0 <= backoff.delay(10_000) <= 30.0
