"""What a handler plugin implements, and the context it is given for each message."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

import msgspec

from consumer.errors import ConfigError, OptionError

if TYPE_CHECKING:
    import httpx
    from aiokafka import AIOKafkaProducer
    from structlog.typing import FilteringBoundLogger

    from consumer.cloudevents import CloudEvent
    from consumer.events import RecordingEvent


class Record(msgspec.Struct, frozen=True, gc=False):  # one per message: a Struct is cheapest
    """Where a message came from: the Kafka record without its value."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    """As the producer sent them: a value may be None (Kafka allows a header without one)."""
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
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> None: ...


class ProducerPublish:
    """`Publish` through an aiokafka producer: the engine's ``ctx.publish``, and the kit's."""

    __slots__ = ("_producer",)

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def __call__(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> None:
        await self._producer.send_and_wait(topic, value, key=key, headers=list(headers))


@runtime_checkable
class Handler(Protocol):
    """A handler plugin: an object with ``async def handle(event, ctx)``.

    Optional ``async def start(self)`` and ``async def close(self)`` open and release resources
    once per worker. A handler class that takes options declares them as an ``Options``
    msgspec Struct and accepts an instance as its only constructor argument. `BaseHandler`
    declares all of these, typed.
    """

    async def handle(self, event: RecordingEvent, ctx: Context) -> None: ...


class BaseHandler(ABC):
    """An optional base class declaring a handler's whole interface, typed.

    `start` and `close` do nothing until overridden. Mark overrides ``@override`` (from
    `typing` on 3.12+, `typing_extensions` before) and the type checker reports a misspelt one.
    ``Options`` is None for a handler without options; one with options sets it to its msgspec
    Struct and takes an instance as its only constructor argument.
    """

    Options: ClassVar[type[msgspec.Struct] | None] = None

    async def start(self) -> None:  # noqa: B027 (optional: does nothing unless overridden)
        """Open what `handle` needs, once, before the first event; failing here stops start-up."""

    @abstractmethod
    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        """Handle one event; see `Handler`."""

    async def close(self) -> None:  # noqa: B027 (optional: does nothing unless overridden)
        """Release what `start` opened, once, after the last event."""


@runtime_checkable
class _Starts(Protocol):
    async def start(self) -> None: ...


@runtime_checkable
class _Closes(Protocol):
    async def close(self) -> None: ...


H = TypeVar("H", bound=Handler)


def options_type(factory: object) -> type[msgspec.Struct] | None:
    """A handler class's ``Options`` Struct, or None when it takes no options."""
    options = getattr(factory, "Options", None)  # a loaded plugin is any object until checked
    if options is None or (isinstance(options, type) and issubclass(options, msgspec.Struct)):
        return options
    raise TypeError(f"{factory!r}.Options is not a msgspec Struct")


@asynccontextmanager
async def running(handler: H, name: str | None = None) -> AsyncIterator[H]:
    """``start()`` the handler (when it has one) and ``close()`` it on the way out.

    `name` is the handler's registered name: an `OptionError` from ``start()`` is re-raised
    as a `ConfigError` keyed ``handlers.<name>.<option>``.
    """
    if isinstance(handler, _Starts):
        with options_keyed(name):
            await handler.start()
    try:
        yield handler
    finally:
        if isinstance(handler, _Closes):
            await handler.close()


@contextmanager
def options_keyed(name: str | None) -> Iterator[None]:
    """Re-raise an `OptionError` as a `ConfigError` keyed ``handlers.<name>.<option>``."""
    try:
        yield
    except OptionError as exc:
        if name is None:
            raise
        key = f"handlers.{name}.{exc.option}"
        raise ConfigError(f"{key}: {exc.reason}", key) from None
