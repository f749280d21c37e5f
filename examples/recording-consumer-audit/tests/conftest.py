"""A Kafka broker for the broker-backed tests, found the way recording-consumer's own tests do."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from consumer.devkafka import LocalBroker, free_port


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``$KAFKA_BOOTSTRAP_SERVERS`` if set, else a local broker (Java and Maven needed)."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with LocalBroker(tmp_path_factory.mktemp("kafka"), port=free_port()) as broker:
        yield broker.bootstrap
