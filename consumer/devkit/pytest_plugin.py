"""pytest fixtures for handler authors, registered by the ``pytest11`` entry point.

Installing recording-consumer makes them available in any test suite:

    async def test_my_handler(handler_round_trip: RoundTrip) -> None:
        result = await handler_round_trip({"mine": MyHandler()}, [make_event()])
        assert result.outcomes["handled"] == 1

The broker is ``$KAFKA_BOOTSTRAP_SERVERS`` when set, else a local one started once per session
from Apache Kafka's jars (Java 17+ and Maven needed; see `consumer.devkit.broker`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial

import pytest

from consumer.devkit.broker import LocalBroker, free_port
from consumer.devkit.testing import RoundTrip, kafka_round_trip


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka broker's bootstrap address for the whole test session."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with LocalBroker(tmp_path_factory.mktemp("kafka"), port=free_port()) as broker:
        yield broker.bootstrap


@pytest.fixture
def handler_round_trip(kafka_bootstrap: str) -> RoundTrip:
    """``await handler_round_trip(handlers, events, ...)``: `kafka_round_trip` on that broker."""
    return partial(kafka_round_trip, kafka_bootstrap)
