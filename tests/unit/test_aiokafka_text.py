"""aiokafka's words, read by `consumer.kafka.aiokafka_text` (the one module that reads them):
its clients failing to start against loopback listeners that refuse or hang up, no broker.

Written against aiokafka 0.14.0, the version requirements.lock pins: if an upgrade rewords a
log record or a connection error, these fail rather than the start-up errors reading twice.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
from collections.abc import AsyncIterator
from importlib.metadata import version

import aiokafka.client
import aiokafka.cluster
import aiokafka.consumer.group_coordinator
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError

from consumer.kafka.aiokafka_text import (
    BOOTSTRAP_FAILURES,
    CLIENT_LOGGER,
    COORDINATOR_MARKED_DEAD,
    COORDINATOR_REQUEST_FAILED,
    TOPIC_NOT_FOUND,
    closed_by_peer,
    is_bootstrap_failure,
)

WRITTEN_AGAINST = "0.14.0"


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
async def hanging_up() -> AsyncIterator[int]:
    """A loopback port that accepts connections and closes them at once."""
    server = await asyncio.start_server(lambda _r, writer: writer.close(), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def refused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def failed_start(bootstrap: str) -> list[logging.LogRecord]:
    """What a consumer that cannot bootstrap writes to the client's logger."""
    kept = Kept()
    logger = logging.getLogger(CLIENT_LOGGER)
    logger.addHandler(kept)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
    try:
        with pytest.raises(KafkaConnectionError):
            await consumer.start()
    finally:
        logger.removeHandler(kept)
        await consumer.stop()
    return [record for record in kept.records if record.levelno >= logging.WARNING]


async def test_a_clients_bootstrap_failures_are_recognised_by_their_template(
    hanging_up: int,
) -> None:
    """A refused address and one that hangs up during set-up each log one record on the
    client's logger, recognised as a bootstrap failure; in the version checked against."""
    refused = await failed_start(f"127.0.0.1:{refused_port()}")
    hung_up = await failed_start(f"127.0.0.1:{hanging_up}")
    assert [r.msg for r in refused + hung_up] == ['Unable connect to "%s:%s": %s'] * 2
    assert all(is_bootstrap_failure(record) for record in refused + hung_up)
    args = hung_up[0].args
    assert isinstance(args, tuple)
    assert isinstance(args[2], KafkaConnectionError)
    assert closed_by_peer(args[2])
    # A listener that answers set-up but not metadata, or a known node: the same words.
    client = inspect.getsource(aiokafka.client)
    assert all(
        f"{template!r}" in client or f'"{template}"' in client for template in BOOTSTRAP_FAILURES
    )
    assert version("aiokafka") == WRITTEN_AGAINST


async def test_a_connection_the_broker_closes_is_told_from_other_failures(
    hanging_up: int,
) -> None:
    """The error a connection gets when the peer hangs up says so; one that never connected
    does not."""
    with pytest.raises(KafkaConnectionError) as raised:
        await create_conn("127.0.0.1", hanging_up, request_timeout_ms=5_000)
    assert closed_by_peer(raised.value)
    assert not closed_by_peer(KafkaConnectionError("Unable to bootstrap from []"))
    assert not closed_by_peer(ConnectionResetError("closed"))


def test_the_expected_start_up_records_are_still_written_as_read() -> None:
    """The templates of a missing topic and an unavailable or dead coordinator, which the log
    holds back at first, are still the ones aiokafka logs with."""
    assert f'"{TOPIC_NOT_FOUND}"' in inspect.getsource(aiokafka.cluster)
    coordinator = inspect.getsource(aiokafka.consumer.group_coordinator)
    assert f'"{COORDINATOR_REQUEST_FAILED}"' in coordinator
    assert f'"{COORDINATOR_MARKED_DEAD}"' in coordinator
