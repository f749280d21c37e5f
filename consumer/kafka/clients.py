"""Every Kafka producer of the project is built here: acknowledged by all in-sync replicas, and
idempotent.

On a replicated cluster a record only the leader has (``acks=1``) is gone when that leader dies
before its followers copied it; and a send retried across a leader change writes the record
twice unless the producer is idempotent (the broker drops the repeat by sequence number).
Dead letters, ``ctx.publish``, ``dlq replay``, ``produce`` and the ingress all take their
producer from `build_producer`, so none can be built with weaker settings.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from consumer.settings.config import KafkaSettings
from consumer.kafka import connection


def build_producer(kafka: KafkaSettings, **options: Any) -> AIOKafkaProducer:
    """An unstarted producer for `kafka` (start it with `connection.start`) with ``acks="all"``,
    idempotence and ``kafka.producer_compression``; `options` are further aiokafka arguments
    (``max_request_size``, ``linger_ms``), never another ``acks``."""
    return AIOKafkaProducer(
        **connection.client_options(kafka),
        acks="all",
        enable_idempotence=True,
        compression_type=kafka.producer_compression,
        **options,
    )
