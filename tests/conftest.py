"""Shared fixtures: unique names and topic creation.

The session's broker, `kafka_bootstrap`, comes from the project's own pytest plugin
(consumer/devkit/pytest_plugin.py), the one plugin authors get.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from consumer.devkit.broker import LocalBroker, free_port
from consumer.devkit.broker.cluster import LocalCluster
from consumer.kafka import topics as topics
from consumer.settings.config import KafkaSettings
from tests._support.tls_server import FakeBandwidth, client_for

# Fixtures shared by tests in more than one directory.
pytest_plugins = ["tests._support.downloads", "tests._support.handler_runs"]


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A topic/group name no other test (or earlier run against the same broker) uses."""
    test = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")[:80]
    return f"t-{test}-{uuid.uuid4().hex[:8]}"


async def _create_topic(
    bootstrap: str, name: str, partitions: int = 1, configs: dict[str, str] | None = None
) -> None:
    """Create `name` and return once the broker's metadata shows a leader for every partition."""
    async with topics.admin_client(KafkaSettings(bootstrap_servers=bootstrap)) as admin:
        await topics.create_topic(admin, name, partitions, configs)
        # Metadata is polled: the broker offers nothing to wait on until leaders are elected.
        async with asyncio.timeout(30):
            while True:
                if _has_leaders(await admin.describe_topics([name]), partitions):
                    return
                await asyncio.sleep(0.1)


def _has_leaders(described: list[dict[str, Any]], partitions: int) -> bool:
    found = described[0]["partitions"] if described and described[0]["error_code"] == 0 else []
    return len(found) == partitions and all(p["leader"] >= 0 for p in found)


@pytest.fixture
def create_topic() -> Callable[..., Awaitable[None]]:
    """``await create_topic(bootstrap, name, partitions=1, configs=None)``: a topic ready to use.

    A fixture rather than an import, so tests need not import conftest as a module.
    """
    return _create_topic


@pytest.fixture
def ca() -> trustme.CA:
    """A throwaway certificate authority for the local HTTPS stand-in for Bandwidth."""
    return trustme.CA()


@pytest.fixture
async def http(ca: trustme.CA) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client trusting `ca`, as the download handler's shared client would."""
    async with client_for(ca) as client:
        yield client


@pytest.fixture
async def bandwidth(ca: trustme.CA) -> AsyncIterator[FakeBandwidth]:
    """A real local HTTPS server answering as Bandwidth's media and token endpoints."""
    fake = FakeBandwidth(ca)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of this test's own, for drills that kill and restart it (`kill`, `restart`).

    Its `start`/`restart` run their own event loop: call them via `asyncio.to_thread` in tests.
    """
    with LocalBroker(tmp_path / "kafka", port=free_port()) as broker:
        yield broker


@pytest.fixture(scope="session")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """One broker per session with SASL_SSL (SCRAM-SHA-512, PLAIN) and mutual-TLS SSL listeners,
    started by the first test that asks; `.security` has the addresses and credentials and
    `.bootstrap` is its PLAINTEXT listener, for the tests' own set-up and checks."""
    state = tmp_path_factory.mktemp("secured-kafka")
    with LocalBroker(state, port=free_port(), secured=True) as broker:
        yield broker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the three-node cluster run last, so its JVMs (started by the first of them)
    do not idle beside the rest of the suite on two cores."""
    items.sort(key=lambda item: "kafka_cluster" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def _cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("cluster"), nodes=3) as cluster:
        yield cluster


@pytest.fixture
async def kafka_cluster(_cluster: LocalCluster) -> AsyncIterator[LocalCluster]:
    """A three-broker cluster (RF 3, min.insync.replicas 2) with a controller of its own,
    started once per session; `kill`, `stop_node` and `restart` act on one broker by id (the
    controller stays up), `leader` and `coordinator` say which.

    After each test every node runs again and the internal topics are back in sync. Its
    `start`/`restart` run their own event loop: call them via `asyncio.to_thread` in tests.
    """
    yield _cluster
    for node_id in range(1, _cluster.size + 1):
        if node_id not in _cluster.running():
            await asyncio.to_thread(_cluster.restart, node_id)
    await asyncio.to_thread(_cluster.wait_registered)
    await _cluster.wait_in_sync(["__consumer_offsets"], seconds=120)
