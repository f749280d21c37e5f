"""What the engine tells whoever observes it, as Protocols the observers implement.

The engine never imports its observers: the command line (or a test, or the dev kit) builds
them and hands them to the `Worker`. A worker built without them runs the same, unobserved:
health beats go nowhere, attempt durations are not kept, no watcher runs, nothing is traced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from consumer.engine.delivery import DeadLetters
    from consumer.engine.scheduler import Queued
    from consumer.engine.worker import Worker
    from consumer.handler_api import Handler, Publish
    from consumer.outcomes import Outcome


class HealthBeats(Protocol):
    """The worker's progress as it happens: what liveness and readiness are judged on."""

    draining: bool
    last_fetch: float
    """When the fetch loop last turned (monotonic)."""

    def fail(self, reason: str) -> None: ...
    def assigned(self, partitions: Collection[TopicPartition]) -> None: ...
    def revoked(self, partitions: Collection[TopicPartition]) -> None: ...
    def committed(self, points: dict[TopicPartition, int]) -> None: ...
    def fetched_to(self, tp: TopicPartition, position: int) -> None: ...


class AttemptDurations(Protocol):
    """Where each handler attempt's duration goes, by result (ok, retry, failed)."""

    def observe(self, handler: str, result: str, seconds: float) -> None: ...


class Tracer(Protocol):
    """Tracing around deliveries. While tracing is off the worker has none, and the delivery
    runs exactly as untraced code: no per-message check, no wrapper."""

    def handlers(self, handlers: Mapping[str, Handler]) -> Mapping[str, Handler]:
        """The handlers to run, each attempt of each in a span."""
        ...

    def dead_letters(self, dead_letters: DeadLetters) -> DeadLetters:
        """Dead letters carrying the context of the message's span."""
        ...

    def publish(self, publish: Publish) -> Publish:
        """`ctx.publish` carrying the current context."""
        ...

    def writer(self, write: Callable[..., Any]) -> Callable[..., Any]:
        """A log line writer adding the current span's ids."""
        ...

    async def attempt(
        self, work: Queued, run: Callable[[Queued], Awaitable[float | None]]
    ) -> float | None:
        """`run(work)` in the message's span, current while it runs."""
        ...

    def outcome(self, outcome: Outcome, work: Queued, fields: Mapping[str, Any]) -> None:
        """What became of `work` (or that a retry is scheduled), told during its attempt."""
        ...


class Observer(Protocol):
    """Everything that observes one worker."""

    @property
    def health(self) -> HealthBeats: ...
    @property
    def durations(self) -> AttemptDurations: ...
    @property
    def tracer(self) -> Tracer | None: ...

    def watchers(
        self, worker: Worker, consumer: AIOKafkaConsumer
    ) -> list[Coroutine[Any, Any, None]]:
        """Tasks to run beside the worker while it consumes (cancelled when it stops)."""
        ...


class Unobserved:
    """The default observer: nothing kept, nothing watched, nothing traced."""

    def __init__(self) -> None:
        self.health = _NoHealth()
        self.durations = Unmeasured()
        self.tracer: Tracer | None = None

    def watchers(
        self, worker: Worker, consumer: AIOKafkaConsumer
    ) -> list[Coroutine[Any, Any, None]]:
        return []


class _NoHealth:
    def __init__(self) -> None:
        self.draining = False
        self.last_fetch = 0.0

    def fail(self, reason: str) -> None:
        pass

    def assigned(self, partitions: Collection[TopicPartition]) -> None:
        pass

    def revoked(self, partitions: Collection[TopicPartition]) -> None:
        pass

    def committed(self, points: dict[TopicPartition, int]) -> None:
        pass

    def fetched_to(self, tp: TopicPartition, position: int) -> None:
        pass


class Unmeasured:
    """Attempt durations not kept: a worker without metrics."""

    def observe(self, handler: str, result: str, seconds: float) -> None:
        pass
