"""Topic settings for the three-broker cluster."""

from __future__ import annotations

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from consumer.kafka.topics import admin_client
from consumer.settings.config import KafkaSettings


async def topic_config(bootstrap: str, topic: str, name: str) -> str:
    """The value of topic setting `name` as the cluster reports it."""
    async with admin_client(KafkaSettings(bootstrap_servers=bootstrap)) as admin:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {name: None})]
        )
    (resource,) = response.to_object()["resources"]
    (entry,) = (e for e in resource["config_entries"] if e["config_names"] == name)
    value: str = entry["config_value"]
    return value
