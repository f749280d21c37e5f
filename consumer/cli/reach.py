"""Waiting for the broker before a command talks to it, as the worker waits at start-up."""

from __future__ import annotations

import sys

from consumer.observability.printable import print_escaped
from consumer.settings.config import KafkaSettings


async def reach(kafka: KafkaSettings) -> None:
    """Wait for the broker like the worker does, reporting on stderr (stdout may be data)."""
    from consumer.kafka.startup import wait_for_kafka

    def waiting(attempt: int, error: str, left: float) -> None:
        print_escaped(
            f"recording-consumer: Kafka at {kafka.bootstrap_servers} not reachable yet "
            f"(attempt {attempt}: {error}); retrying for {left:.0f} s more",
            sys.stderr,
        )

    await wait_for_kafka(kafka, waiting)
