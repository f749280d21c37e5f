"""What a handler plugin implements, and the context it is given for each message."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

if TYPE_CHECKING:
    import httpx
    from structlog.typing import FilteringBoundLogger

    from consumer.cloudevents import CloudEvent
    from consumer.events import RecordingEvent


class Record(msgspec.Struct, frozen=True, gc=False):  # one per message: a Struct is cheapest
    """Where a message came from: the Kafka record without its value."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int
    """Milliseconds since the epoch, as Kafka stamped it."""


class Context:
    """What a handler gets besides the event; built by the engine for every attempt."""

    __slots__ = ("_bind", "_log", "attempt", "envelope", "http", "publish", "record", "value")

    def __init__(
        self,
        log: FilteringBoundLogger,
        record: Record,
        value: bytes,
        attempt: int,
        http: httpx.AsyncClient,
        publish: Publish,
        *,
        bind: Callable[[], Mapping[str, Any]] | None = None,
        envelope: CloudEvent | None = None,
    ) -> None:
        self._log = log
        self._bind = bind
        self.record = record
        self.value = value
        """The message value exactly as it arrived, for handlers that forward the original."""
        self.attempt = attempt
        """1 for the first delivery to this handler, 2 for its first retry, and so on."""
        self.http = http
        """The worker's shared HTTP client: connection pools are reused across messages."""
        self.publish = publish
        """Send a message through the worker's shared Kafka producer."""
        self.envelope = envelope
        """The CloudEvent the callback arrived in (`events.envelope`), None for a raw one."""

    @property
    def log(self) -> FilteringBoundLogger:
        """Bound to topic, partition, offset, recordingId, status and handler name.

        Binding costs more than a whole no-op handler, so it waits for the first use of `log`.
        """
        if self._bind is not None:
            self._log = self._log.bind(**self._bind())
            self._bind = None
        return self._log


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
