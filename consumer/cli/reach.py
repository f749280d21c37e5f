"""Waiting for the broker before a command talks to it, as the worker waits at start-up."""

from __future__ import annotations

import sys

from consumer.config import KafkaSettings
from consumer.engine.printable import print_escaped


async def reach(kafka: KafkaSettings) -> None:
    """Wait for the broker like the worker does, reporting on stderr (stdout may be data)."""
    from consumer.observability.startup import wait_for_kafka

    def waiting(attempt: int, error: str, left: float) -> None:
        print_escaped(
            f"recording-consumer: Kafka at {kafka.bootstrap_servers} not reachable yet "
            f"(attempt {attempt}: {error}); retrying for {left:.0f} s more",
            sys.stderr,
        )

    await wait_for_kafka(kafka, waiting)
