"""The dev kit's local Apache Kafka from Maven Central's jars: ``python -m consumer.devkit.broker``
runs it, `LocalBroker` and `LocalCluster` (in `cluster`) start one for a test."""

from consumer.devkit.broker.process import (
    KAFKA_VERSION,
    BrokerError,
    LocalBroker,
    bootstrap_servers,
    free_port,
    free_ports,
)

__all__ = [
    "KAFKA_VERSION",
    "BrokerError",
    "LocalBroker",
    "bootstrap_servers",
    "free_port",
    "free_ports",
]
