"""What observes one worker, built from its settings: the command line hands it to the worker
(which reports to it) and to the endpoint (which reads it).

It satisfies the engine's `Observer` Protocol structurally; observability imports no engine
module and the engine no observability module.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from aiokafka import AIOKafkaConsumer

from consumer.observability import tracing
from consumer.observability.health import Health
from consumer.observability.metrics import Durations
from consumer.observability.view import WorkerView
from consumer.observability.watch import log_stats, watch_broker, watch_loop
from consumer.settings.config import Settings


class Observers:
    """A worker's health, its handler attempts' durations, its watchers and, while tracing is
    on (decided when this is built), its tracer."""

    def __init__(self, settings: Settings) -> None:
        self.health = Health(settings)
        self.durations = Durations()
        self.tracer = tracing.tracer_for(settings)

    def watchers(
        self, worker: WorkerView, consumer: AIOKafkaConsumer
    ) -> list[Coroutine[Any, Any, None]]:
        """The broker and lag probe, the event loop's watcher and the stats line."""
        health = self.health
        return [
            watch_broker(worker, health, consumer),
            watch_loop(worker, health),
            log_stats(worker, health),
        ]
