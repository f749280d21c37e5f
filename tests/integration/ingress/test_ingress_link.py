"""The ingress's Kafka link against a real broker: it finds Kafka back by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from consumer.ingress.link import KafkaLink
from consumer.settings.config import KafkaSettings
from tests._support.kafka_helpers import wait_for


async def test_the_link_finds_kafka_back_without_a_callback(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """An ack came later than ack_timeout (a leader election, say), so Kafka counts as not
    acknowledging, and no callback comes after that (an unready ingress gets none): the link
    asks Kafka by itself, finds every partition led, and Kafka counts as up again."""
    await create_topic(kafka_bootstrap, unique_name, partitions=3)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=unique_name)
    link = KafkaLink(kafka, 1024, 2.0)
    connecting = asyncio.create_task(link.connect())
    try:
        await wait_for(link.started.is_set, 60, "the producer started")
        link.up = False  # what a late ack leaves behind
        await wait_for(lambda: link.up, 30, "Kafka up again")
        assert not connecting.done()
    finally:
        connecting.cancel()
        await link.close(10)
