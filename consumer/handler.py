"""What a handler plugin implements, and the context it is given for each message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import httpx
    from structlog.typing import FilteringBoundLogger

    from consumer.events import RecordingEvent


@dataclass(frozen=True, slots=True)
class Record:
    """Where a message came from: the Kafka record without its value."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int
    """Milliseconds since the epoch, as Kafka stamped it."""


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler gets besides the event; built by the engine for every attempt."""

    log: FilteringBoundLogger
    """Already bound to topic, partition, offset, recordingId, status and handler name."""
    record: Record
    value: bytes
    """The message value exactly as it arrived, for handlers that forward the original."""
    attempt: int
    """1 for the first delivery to this handler, 2 for its first retry, and so on."""
    http: httpx.AsyncClient
    """The worker's shared HTTP client: connection pools are reused across messages."""
    publish: Publish
    """Send a message through the worker's shared Kafka producer."""


class Publish(Protocol):
    """``await ctx.publish(topic, value, key=..., headers=...)``: returns once Kafka has it."""

    async def __call__(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None: ...


@runtime_checkable
class Handler(Protocol):
    """A handler plugin: an object with ``async def handle(event, ctx)``.

    Optional ``async def start(self)`` and ``async def close(self)`` open and release resources
    once per worker. A handler class that takes options declares them as an ``Options``
    msgspec Struct and accepts an instance as its only constructor argument.
    """

    async def handle(self, event: RecordingEvent, ctx: Context) -> None: ...
