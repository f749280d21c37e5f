"""The intake: one Kafka record in, a job, a skip or an undecodable message out.

Pure (no I/O, no logging), so the worker and ``inspect`` make the same decision from the same
code. A skip is finished as it is fetched; a job or an undecodable message is queued: the
worker gives it its place in the engine (its fetched batch and lane) and the scheduler runs it.

Everything in a record is the producer's: header values may be null or any bytes, fields any
text of any length. Whatever goes wrong while reading it makes the record undecodable (it is
dead-lettered with the reason), never an error of the engine's.

Its three results are final classes: the engine tells them apart with ``type(x) is C``, the
cheapest check, and mypy narrows a union on that check only when the class is final.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, final

from consumer.cloudevents import CloudEvent, MessageDecoder
from consumer.errors import DecodeError
from consumer.events import EventDecoder, OtherEvent, RecordingEvent, UnknownEvent
from consumer.handler_api import Record
from consumer.plugins.routing import Router
from consumer.settings.config import Settings

if TYPE_CHECKING:
    from consumer.engine.delivery import RetryState
    from consumer.engine.offsets import Batch

H = TypeVar("H")
UNDECODABLE_KEY = object()
"""The ordering key of messages that could not be decoded: they have no recording to order by."""
_SKIPPED = (OtherEvent, UnknownEvent)


class Message(Protocol):
    """What the intake reads of a Kafka record (aiokafka's ConsumerRecord has it all)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...
    @property
    def timestamp(self) -> int: ...


# Dataclasses: each kind's generated constructor also sets the fields it inherits, so making one
# costs a single call per message (a super().__init__ costs a second), and mypy checks every call
# against the fields. No eq: the engine keys dicts and sets by the message's identity.
@dataclass(slots=True, eq=False, repr=False)
class _QueuedBase:
    """What every queued message carries: where it came from and its place in the engine."""

    record: Record
    value: bytes | None
    key: Hashable
    """Ordering key: messages of one partition with the same key run one at a time."""
    # Set by the engine when it takes the message on.
    batch: Batch = field(init=False)
    index: int = field(init=False)
    lane: tuple[Any, Hashable] = field(init=False)
    started: float = field(init=False, default=0.0)
    retry: RetryState | None = field(init=False, default=None)
    """Attempts and failures so far; None until a handler first fails."""


@final
@dataclass(slots=True, eq=False, repr=False)
class Job(_QueuedBase, Generic[H]):
    """A recording event to hand to the handlers of its route."""

    event: RecordingEvent
    envelope: CloudEvent | None
    route: tuple[tuple[str, H], ...]


@final
@dataclass(slots=True, eq=False, repr=False)
class Undecodable(_QueuedBase):
    """A message that is no event we can read: it goes to the dead-letter topic."""

    key: Hashable = field(init=False, default=UNDECODABLE_KEY)
    error: DecodeError


@final
class OtherCallback:
    """A callback that is not a recording event: finished as it is fetched, per policy."""

    __slots__ = ("event_type", "known", "policy", "record")

    def __init__(
        self, record: Record, event_type: str, known: bool, policy: Literal["skip", "warn"]
    ) -> None:
        self.record = record
        self.event_type = event_type
        self.known = known
        """A Bandwidth callback type we know (not a recording); False: one we have never seen."""
        self.policy = policy


class Intake(Generic[H]):
    """Decodes, classifies and routes records; built once, called per record."""

    __slots__ = ("_by_key", "_decode", "_decode_raw", "_other", "_route", "_unknown")

    def __init__(self, settings: Settings, handlers: Mapping[str, H]) -> None:
        self._decode = MessageDecoder(settings.events.envelope).decode
        # The default: no envelope to look for, one call fewer per message.
        self._decode_raw = EventDecoder().decode if settings.events.envelope == "raw" else None
        self._route = Router(settings.routes, handlers).route
        self._by_key = settings.engine.ordering == "key"
        self._other = settings.events.other_event_types
        self._unknown = settings.events.unknown_event_types

    def __call__(self, message: Message) -> Job[H] | OtherCallback | Undecodable:
        headers = message.headers
        if type(headers) is not tuple:
            headers = tuple(headers)
        key = message.key
        record = Record(
            message.topic, message.partition, message.offset, key, headers, message.timestamp
        )
        value = message.value
        try:
            if self._decode_raw is not None:
                event, envelope = self._decode_raw(value or b""), None
            else:
                event, envelope = self._decode(value or b"", headers)
            if isinstance(event, _SKIPPED):
                known = type(event) is OtherEvent
                policy = self._other if known else self._unknown
                return OtherCallback(record, event.event_type, known, policy)
            return Job(
                record,
                value,
                (key or event.ordering_key) if self._by_key else None,
                event,
                envelope,
                self._route(event.status),
            )
        except DecodeError as exc:
            return Undecodable(record, value, exc)
        except Exception as exc:
            # A case the decoders did not foresee is still this record's fault, not the engine's:
            # retrying it would fail the same way for ever.
            reason = f"unreadable message: {type(exc).__name__}: {str(exc)[:200]}"
            return Undecodable(record, value, DecodeError(reason))

    @staticmethod
    def refuse(message: Message, reason: str) -> Undecodable:
        """`message` as undecodable for `reason`, found before it could be read (a header key
        that is not UTF-8)."""
        record = Record(
            message.topic,
            message.partition,
            message.offset,
            message.key,
            tuple(message.headers),
            message.timestamp,
        )
        return Undecodable(record, message.value, DecodeError(reason))
