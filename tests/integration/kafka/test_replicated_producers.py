"""Producers and topics fit for a replicated cluster, checked on the three-node one: every
producer of the project is idempotent (so ``acks=all``), and the dead-letter topic the worker
creates takes the cluster's replication defaults unless the settings say otherwise."""

from __future__ import annotations

import asyncio
import io
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

from consumer.cli.produce import produce
from consumer.deadletters.commands import replay
from consumer.deadletters.publisher import DeadLetterPublisher
from consumer.devkit.broker.cluster import LocalCluster
from consumer.engine.worker import Worker
from consumer.handlers.publish import PublishHandler, PublishOptions
from consumer.kafka.clients import build_producer
from consumer.kafka.topics import admin_client
from consumer.settings.config import DeadLetterSettings, KafkaSettings
from tests._support.cluster import topic_config
from tests._support.kafka_helpers import (
    Recorder,
    printer,
    record_batches,
    recording_message,
    settings_for,
)

PRODUCER_ID_AT = 43
"""Record batch v2: base offset 8, length 4, leader epoch 4, magic 1, crc 4, attributes 2,
last offset delta 4, two timestamps 16; then the int64 producer id (-1: not idempotent)."""
RECORDS_AT = 57
"""The batch's int32 record count, after producer epoch 2 and base sequence 4."""


def batches(data_dir: Path) -> list[tuple[int, int]]:
    """(producer id, record count) of every record batch in a partition's log directory."""
    found = []
    for segment in sorted(data_dir.glob("*.log")):
        data = segment.read_bytes()
        for start, _ in record_batches(data):
            (producer_id,) = struct.unpack_from(">q", data, start + PRODUCER_ID_AT)
            (records,) = struct.unpack_from(">i", data, start + RECORDS_AT)
            found.append((producer_id, records))
    return found


async def leader_batches(cluster: LocalCluster, topic: str) -> list[tuple[int, int]]:
    leader = await cluster.leader(topic, 0)
    return batches(cluster.node(leader).data_dir / f"{topic}-0")


async def test_produce_dead_letters_publish_and_replay_write_idempotent_batches(
    kafka_cluster: LocalCluster, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """`produce`, the worker's dead letters and ``publish``, and `dlq replay` each write batches
    carrying a producer id: idempotent, which aiokafka allows only with ``acks=all``."""
    bootstrap, source = kafka_cluster.bootstrap, unique_name
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    await create_topic(bootstrap, source, 1)
    await create_topic(bootstrap, f"{source}.complete", 1)
    await produce(kafka, source, [recording_message("r-1"), (b"poison", b"not json")])
    settings = settings_for(bootstrap, source, source, ROUTES__COMPLETE='["publish"]')
    handlers = {"publish": PublishHandler(PublishOptions(topic=source + ".{status}"))}
    await asyncio.wait_for(Worker(settings, handlers | {"log": Recorder()}).run(1.0), 90)
    replayed = await replay(
        kafka,
        f"{source}.dlq",
        f"{source}.replay",
        to=source,
        error_class=None,
        handler=None,
        recording_id=None,
        dry_run=False,
        say=printer(io.StringIO()),
    )
    assert (replayed.replayed, replayed.skipped) == (1, 0)

    written = {
        topic: await leader_batches(kafka_cluster, topic)
        for topic in (source, f"{source}.dlq", f"{source}.complete")
    }
    records = {topic: sum(n for _, n in found) for topic, found in written.items()}
    assert records == {source: 3, f"{source}.dlq": 1, f"{source}.complete": 1}, written
    assert all(pid >= 0 for found in written.values() for pid, _ in found), written


async def test_dead_letter_topic_takes_cluster_defaults_unless_set(
    kafka_cluster: LocalCluster, unique_name: str
) -> None:
    """Unset, the created dead-letter topic has the cluster's replication factor (3) and
    min.insync.replicas (2); ``dead_letter.replication_factor = 2`` and
    ``dead_letter.min_insync_replicas = 1`` are what the topic gets when set."""
    bootstrap = kafka_cluster.bootstrap
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic=unique_name)
    defaults, chosen = f"{unique_name}.dlq", f"{unique_name}.dlq2"
    explicit = DeadLetterSettings(replication_factor=2, min_insync_replicas=1)
    producer = build_producer(kafka)  # never started: creating the topic needs none
    try:
        for topic, dead_letter in ((defaults, DeadLetterSettings()), (chosen, explicit)):
            publisher = DeadLetterPublisher(producer, kafka, topic, unique_name, dead_letter)
            await publisher.ensure_topic()
    finally:
        await producer.stop()

    async with admin_client(kafka) as admin, asyncio.timeout(30):
        while True:  # a topic just created may show no partitions yet
            described = await admin.describe_topics([defaults, chosen])
            replicas = {
                t["topic"]: {len(p["replicas"]) for p in t["partitions"]} for t in described
            }
            if all(replicas.get(topic) for topic in (defaults, chosen)):
                break
            await asyncio.sleep(0.2)
    assert replicas == {defaults: {3}, chosen: {2}}
    assert await topic_config(bootstrap, defaults, "min.insync.replicas") == "2"
    assert await topic_config(bootstrap, chosen, "min.insync.replicas") == "1"
