"""Kafka's admin client, started and closed in one place; creating topics, listing their
partitions, reading their ends.

aiokafka's admin client reports a topic's failure inside its response instead of raising it,
so the unpacking is done here, once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import NoError, TopicAlreadyExistsError, for_code

from consumer.kafka import connection
from consumer.kafka.clients import build_consumer
from consumer.kafka.security import client_options
from consumer.settings.config import KafkaSettings


@asynccontextmanager
async def admin_client(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client for `kafka`, closed after."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await connection.start(admin, kafka)
    try:
        yield admin
    finally:
        await admin.close()


async def create_topic(
    admin: Any,
    name: str,
    partitions: int = -1,
    configs: dict[str, str] | None = None,
    replication_factor: int = -1,
) -> bool:
    """Create `name` unless it exists; True if this call created it.

    -1 partitions or replication factor mean the broker's defaults, so a production cluster's
    policy applies. Any other failure is raised as its Kafka error.
    """
    # With a -1 aiokafka insists on an assignment argument (an empty one means none); without
    # one, on no assignment argument at all.
    defaults = -1 in (partitions, replication_factor)
    topic = NewTopic(
        name,
        partitions,
        replication_factor,
        replica_assignments={} if defaults else None,
        topic_configs=configs or {},
    )
    response = await admin.create_topics([topic])
    for result in response.to_object()["topic_errors"]:
        error = for_code(result["error_code"])
        if error is TopicAlreadyExistsError:
            return False
        if error is not NoError:
            raise error(result["error_message"])
    return True


async def max_message_bytes(admin: Any, name: str) -> int | None:
    """The largest record batch topic `name` accepts (``max.message.bytes``), None if unknown."""
    resource = ConfigResource(ConfigResourceType.TOPIC, name, {"max.message.bytes": None})
    for response in await admin.describe_configs([resource]):
        for described in response.to_object()["resources"]:
            if described["error_code"] != 0:
                return None
            for entry in described["config_entries"]:
                if entry["config_names"] == "max.message.bytes":
                    return int(entry["config_value"])
    return None


async def partitions(admin: Any, topic: str) -> list[TopicPartition]:
    """The partitions of `topic`; none when the broker cannot describe it (it does not exist)."""
    (described,) = await admin.describe_topics([topic])
    if described["error_code"] != 0:
        return []
    return [TopicPartition(topic, p["partition"]) for p in described["partitions"]]


async def end_offsets(kafka: KafkaSettings, topic: str) -> dict[TopicPartition, int]:
    """Where each partition of `topic` ends now: a group has read it all once it committed these."""
    async with admin_client(kafka) as admin:
        described = await partitions(admin, topic)
    # The high watermark, past open transactions: what aiokafka's default isolation reports.
    consumer = build_consumer(kafka, isolation_level="read_uncommitted")
    await connection.start(consumer, kafka)
    try:
        return dict(await consumer.end_offsets(described))
    finally:
        await consumer.stop()
