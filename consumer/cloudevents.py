"""CloudEvents around Bandwidth callbacks, as the CNCF Kafka protocol binding carries them.

Structured mode: the value is a JSON envelope (``content-type: application/cloudevents+json``)
whose ``data`` is the callback, decoded in the same single msgspec pass as the callback itself.
Binary mode: ``ce_*`` headers carry the attributes and the value is the callback; the
envelope keeps the headers and decodes them when first read (usually by the log line, after
the handler), so telling the modes apart costs one plain loop over the headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta

from consumer.errors import DecodeError
from consumer.events import (
    _UNREADABLE,
    Event,
    EventDecoder,
    RecordingEvent,
    _classified,
    _Envelope,
    _error,
    _from_twin,
    _parse_timestamp,
    _RawConferenceRecordingAvailable,
    _RawRecordingAvailable,
    _recovery,
)
from consumer.msgspec_errors import error_path

__all__ = ["CloudEvent", "MessageDecoder"]

T = TypeVar("T")
Timestamp = Annotated[datetime, Meta(tz=True)]
STRUCTURED = b"application/cloudevents"
"""The media type prefix of the ``content-type`` header that marks structured mode."""
_BINARY_HEADERS = {"ce_specversion": 1, "ce_id": 2, "ce_source": 4, "ce_type": 8}
"""The headers binary mode requires, in the order errors name them, each with a bit of its own
so that one loop over a message's headers finds which are there."""
_BINARY_MARK = _BINARY_HEADERS["ce_specversion"]
_BINARY_COMPLETE = sum(_BINARY_HEADERS.values())


class CloudEvent(msgspec.Struct, frozen=True, gc=False):
    """The envelope a callback arrived in: the spec's required attributes and its time."""

    specversion: str
    id: str
    source: str
    type: str
    time: Timestamp | None = None
    """None when the envelope has none (or one that is no timestamp at all)."""

    def log_fields(self) -> dict[str, str]:
        """The attributes for the canonical log line, named like binary mode's headers."""
        # Every handled message's log line calls this: one dict, no merging.
        if self.time is None:
            return {"ce_id": self.id, "ce_source": self.source, "ce_type": self.type}
        return {
            "ce_id": self.id,
            "ce_source": self.source,
            "ce_type": self.type,
            "ce_time": self.time.isoformat(),
        }

    def __eq__(self, other: object) -> bool:
        # By attributes, not by class: a binary-mode envelope equals the one it decodes to.
        if not isinstance(other, CloudEvent):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[str, str, str, str, datetime | None]:
        return (self.specversion, self.id, self.source, self.type, self.time)


class _Structured(CloudEvent, Generic[T], frozen=True, kw_only=True, gc=False):
    """A structured-mode envelope: decoded as one, it is also the CloudEvent handed out."""

    data: T


class _LooseTime(msgspec.Struct, kw_only=True, gc=False):
    """The envelope with its time as text, for a time that is no RFC 3339 timestamp."""

    specversion: str
    id: str
    source: str
    type: str
    time: str | None = None
    data: msgspec.Raw


class MessageDecoder:
    """A Kafka message (value and headers) to its event and envelope, per `events.envelope`."""

    def __init__(self, envelope: Literal["raw", "cloudevents", "auto"]) -> None:
        twins = _RawRecordingAvailable | _RawConferenceRecordingAvailable
        self._envelope = envelope
        self._events = EventDecoder()
        # Bound once: the per-message hot path.
        self._decode_event = self._events.decode
        self._fast_decode = msgspec.json.Decoder(_Structured[RecordingEvent]).decode
        self._twins = msgspec.json.Decoder(_Structured[twins])  # type: ignore[valid-type]
        self._kind = msgspec.json.Decoder(_Structured[_Envelope])
        self._loose = msgspec.json.Decoder(_LooseTime)

    def decode(
        self, value: bytes, headers: Sequence[tuple[str, bytes | None]]
    ) -> tuple[Event, CloudEvent | None]:
        """Raises DecodeError, and only that. A header whose value is null counts as absent."""
        if self._envelope == "raw":
            return self._decode_event(value), None
        seen = 0
        for name, header in headers:
            if header is None:
                continue
            if name == "content-type":
                # The binding's rule: this media type means structured mode, whatever else.
                if header.startswith(STRUCTURED):
                    return self._structured(value)
            elif name in _BINARY_HEADERS:
                seen |= _BINARY_HEADERS[name]
        if seen & _BINARY_MARK:
            if seen != _BINARY_COMPLETE:
                raise _missing_header(seen)
            # tuple() of the worker's tuple is that tuple: a copy only of what could change.
            envelope = _FromHeaders("", "", "", "", None, tuple(headers))
            return self._decode_event(value), envelope
        if self._envelope == "cloudevents":
            return self._structured(value)
        try:
            return self._decode_event(value), None
        except DecodeError as not_raw:
            # auto: an envelope whose producer set no content-type header is still one.
            try:
                return self._structured(value)
            except DecodeError:
                raise not_raw from None

    def _structured(self, data: bytes) -> tuple[Event, CloudEvent]:
        """Envelope and callback in one pass; `EventDecoder`'s recovery steps at ``$.data``."""
        try:
            envelope: _Structured[RecordingEvent] = self._fast_decode(data)
        except msgspec.ValidationError as exc:
            recovery = _recovery(exc, "$.data")
            if recovery == "classify":
                kind = _decoded(self._kind, data)
                return _classified(kind.data.event_type), _attributes(kind)
            if recovery == "lenient":
                twin = _decoded(self._twins, data)
                return _from_twin(twin.data), _attributes(twin)
            if error_path(exc) == "$.time":
                return self._loose_time(data)
            raise _error(exc) from None
        except _UNREADABLE as exc:
            raise _error(exc) from None
        event = envelope.data
        if event.malformed_raw:
            return _from_twin(_decoded(self._twins, data).data), _attributes(envelope)
        return event, envelope

    def _loose_time(self, data: bytes) -> tuple[Event, CloudEvent]:
        loose = _decoded(self._loose, data)
        time = _parse_timestamp(loose.time) if loose.time is not None else None
        attributes = CloudEvent(
            specversion=loose.specversion,
            id=loose.id,
            source=loose.source,
            type=loose.type,
            time=time,
        )
        return self._decode_event(bytes(loose.data)), attributes


class _FromHeaders(CloudEvent, frozen=True, gc=False):
    """Binary mode's envelope: its headers, decoded to attributes when first read.

    Telling binary mode apart and checking the required headers takes one loop; decoding
    them waits for whoever reads them (the message's log line, a handler), and is skipped
    for messages nobody logs. The inherited fields stay empty; these properties answer
    instead (a default makes `headers` positional, the cheaper call).
    """

    headers: tuple[tuple[str, bytes | None], ...] = ()
    decoded: CloudEvent | None = None

    @property  # type: ignore[misc]
    def specversion(self) -> str:
        return self._decoded().specversion

    @property  # type: ignore[misc]
    def id(self) -> str:
        return self._decoded().id

    @property  # type: ignore[misc]
    def source(self) -> str:
        return self._decoded().source

    @property  # type: ignore[misc]
    def type(self) -> str:
        return self._decoded().type

    @property  # type: ignore[misc]
    def time(self) -> datetime | None:
        return self._decoded().time

    def log_fields(self) -> dict[str, str]:
        """The decoded attributes' log fields: one call rather than a property per field."""
        return self._decoded().log_fields()

    def __repr__(self) -> str:
        return repr(self._decoded())

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return self._decoded().__rich_repr__()

    def _decoded(self) -> CloudEvent:
        decoded = self.decoded
        if decoded is None:
            decoded = _from_headers(self.headers)
            msgspec.structs.force_setattr(self, "decoded", decoded)
        return decoded


def _missing_header(seen: int) -> DecodeError:
    name = next(name for name, bit in _BINARY_HEADERS.items() if not seen & bit)
    return DecodeError(f"CloudEvent in binary mode without a {name} header", name)


def _from_headers(headers: tuple[tuple[str, bytes | None], ...]) -> CloudEvent:
    """Never raises: `decode` saw a non-null value for each required header, and any bytes
    decode (the producer's are not necessarily UTF-8)."""
    named = {name: value for name, value in headers if value is not None}
    time = named.get("ce_time")
    return CloudEvent(
        named["ce_specversion"].decode("utf-8", "replace"),
        named["ce_id"].decode("utf-8", "replace"),
        named["ce_source"].decode("utf-8", "replace"),
        named["ce_type"].decode("utf-8", "replace"),
        None if time is None else _parse_timestamp(time.decode("utf-8", "replace")),
    )


def _decoded(decoder: msgspec.json.Decoder[T], data: bytes) -> T:
    try:
        return decoder.decode(data)
    except _UNREADABLE as exc:
        raise _error(exc) from None


def _attributes(envelope: _Structured[Any]) -> CloudEvent:
    """The attributes alone, so no private twin leaves this module as `data`."""
    return CloudEvent(
        specversion=envelope.specversion,
        id=envelope.id,
        source=envelope.source,
        type=envelope.type,
        time=envelope.time,
    )
