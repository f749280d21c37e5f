"""`registered_brokers`, the dev kit's readiness probe, when no broker is there."""

from __future__ import annotations

import asyncio

from consumer.devkit.broker import free_port
from consumer.kafka.clients import registered_brokers
from consumer.settings.config import KafkaSettings


async def test_an_address_where_nothing_listens_has_no_brokers_and_does_not_hang() -> None:
    """A refused address counts 0 brokers (a broker still starting), answered well within the
    caller's deadline rather than raised or waited out."""
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    async with asyncio.timeout(10):
        assert await registered_brokers(kafka, 0.5) == 0
