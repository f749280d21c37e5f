"""Every Kafka producer and consumer of the project is built here.

Producers are acknowledged by all in-sync replicas, and idempotent: on a replicated cluster a
record only the leader has (``acks=1``) is gone when that leader dies before its followers copied
it; and a send retried across a leader change writes the record twice unless the producer is
idempotent (the broker drops the repeat by sequence number). Dead letters, ``ctx.publish``,
``dlq replay``, ``produce`` and the ingress all take their producer from `build_producer`, so
none can be built with weaker settings.

`registered_brokers` asks a cluster's metadata once, for the dev kit's readiness waits.

Consumers never commit on their own (the project commits only what it finished) and read with
``kafka.isolation_level``; the worker, the topic reader and the dead-letter tools take theirs
from `build_consumer`.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from consumer.kafka.security import client_options
from consumer.settings.config import KafkaSettings


def build_producer(kafka: KafkaSettings, **options: Any) -> AIOKafkaProducer:
    """An unstarted producer for `kafka` (start it with `connection.start`) with ``acks="all"``,
    idempotence and ``kafka.producer_compression``; `options` are further aiokafka arguments
    (``max_request_size``, ``linger_ms``), never another ``acks``."""
    return AIOKafkaProducer(
        **client_options(kafka),
        acks="all",
        enable_idempotence=True,
        compression_type=kafka.producer_compression,
        **options,
    )


def build_consumer(kafka: KafkaSettings, **options: Any) -> AIOKafkaConsumer:
    """An unstarted consumer for `kafka` (start it with `connection.start`) without auto-commit,
    reading with ``kafka.isolation_level``; `options` are further aiokafka arguments
    (``group_id``, timeouts) and may override those two."""
    defaults: dict[str, Any] = {
        "enable_auto_commit": False,
        "isolation_level": kafka.isolation_level,
    }
    return AIOKafkaConsumer(**client_options(kafka), **(defaults | options))


async def registered_brokers(kafka: KafkaSettings, request_timeout: float) -> int:
    """How many brokers the cluster's metadata lists, asked once through `kafka`'s bootstrap
    addresses; 0 when none answers within `request_timeout` seconds (a broker still starting)."""
    client = AIOKafkaClient(**client_options(kafka), request_timeout_ms=int(request_timeout * 1000))
    try:
        await client.bootstrap()
        return len(client.cluster.brokers())
    except (TimeoutError, KafkaError, OSError):
        return 0
    finally:
        await client.close()
