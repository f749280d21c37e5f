"""Decode Bandwidth Voice callbacks from Kafka message values into typed events.

Good recording callbacks cost one plain msgspec decode. Only when a timestamp or duration
fails msgspec's strict parsing (zone-less, minute precision, garbage) is the message decoded
again into a string-typed twin and those fields parsed leniently, so one odd timestamp never
makes a recording undeliverable. Wrong JSON types are still errors: they mean a different
payload than the one we understand.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, ClassVar, Final

import msgspec
from msgspec import Meta, field

from consumer.errors import DecodeError
from consumer.msgspec_errors import error_path, missing_field, reason_and_path

__all__ = [
    "KNOWN_EVENT_TYPES",
    "RECORDING_EVENT_TYPES",
    "ConferenceRecordingAvailable",
    "Direction",
    "Event",
    "EventDecoder",
    "FileFormat",
    "OtherEvent",
    "RecordingAvailable",
    "RecordingEvent",
    "Status",
    "UnknownEvent",
    "decode",
    "encode_event",
]


class Status(StrEnum):
    """Recording statuses Bandwidth documents; others may appear and must be tolerated."""

    PROCESSING = "processing"
    PARTIAL = "partial"
    COMPLETE = "complete"
    DELETED = "deleted"
    ERROR = "error"


class Direction(StrEnum):
    """Call directions Bandwidth documents."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class FileFormat(StrEnum):
    """Recording file formats Bandwidth documents."""

    WAV = "wav"
    MP3 = "mp3"


RECORDING_EVENT_TYPES: Final = frozenset({"recordingAvailable", "conferenceRecordingAvailable"})
# The spec's eventType list, plus the webhook docs' `recordComplete` (the spec says
# `recordingComplete`) and `referComplete` from the SDK's newer list.
KNOWN_EVENT_TYPES: Final = RECORDING_EVENT_TYPES | frozenset(
    [
        "answer",
        "bridgeComplete",
        "bridgeTargetComplete",
        "conferenceCreated",
        "conferenceRedirect",
        "conferenceMemberJoin",
        "conferenceMemberExit",
        "conferenceCompleted",
        "disconnect",
        "dtmf",
        "gather",
        "initiate",
        "machineDetectionComplete",
        "recordingComplete",
        "recordComplete",
        "referComplete",
        "redirect",
        "transcriptionAvailable",
        "transferAnswer",
        "transferComplete",
        "transferDisconnect",
    ]
)

Timestamp = Annotated[datetime, Meta(tz=True)]


class _RecordingMixin:
    """Behaviour shared by both recording events; a plain class, so these annotations are
    declarations for type checkers, not Struct fields."""

    __slots__ = ()
    event_type: ClassVar[str]
    account_id: str | None
    recording_id: str | None
    status: str | None
    malformed_raw: tuple[tuple[str, str], ...]

    @property
    def malformed(self) -> tuple[str, ...]:
        """JSON names of fields whose value was unparseable and is therefore None."""
        return tuple(name for name, _ in self.malformed_raw)

    def raw_value(self, json_name: str) -> str | None:
        """The original text of a malformed field, or None if that field was not malformed."""
        return next((raw for name, raw in self.malformed_raw if name == json_name), None)

    @property
    def subject_id(self) -> str | None:
        """The id of what was recorded: ``call_id`` of a call, ``conference_id`` of a conference.

        Both event types have it, so a handler needs no isinstance check to read it.
        """
        return self._subject()[1]

    @property
    def ordering_key(self) -> str | None:
        """The key that keeps all work on one recording in order: its recordingId."""
        return self.recording_id

    def summary(self) -> dict[str, str]:
        """The identifying fields, camelCase, for compact log lines; None values omitted."""
        # Spelt out, not a comprehension: this runs for every canonical log line.
        fields = {"eventType": self.event_type}
        if self.status is not None:
            fields["status"] = self.status
        if self.recording_id is not None:
            fields["recordingId"] = self.recording_id
        subject, subject_id = self._subject()
        if subject_id is not None:
            fields[subject] = subject_id
        if self.account_id is not None:
            fields["accountId"] = self.account_id
        return fields

    def _subject(self) -> tuple[str, str | None]:
        """The JSON name and value of the id of what was recorded (call or conference)."""
        raise NotImplementedError


class _Recording(
    msgspec.Struct,
    _RecordingMixin,
    frozen=True,
    kw_only=True,
    rename="camel",
    gc=False,  # fields are atoms and tuples of str: no cycles, so skip GC tracking
    repr_omit_defaults=True,
    tag_field="eventType",
):
    """Struct options shared by both recording events; subclasses add the tag and fields."""


# Fields are declared in the order Bandwidth sends them: msgspec matches keys fastest when
# the next key is the next field. malformed_raw holds (JSON field name, raw text) for each
# timestamp/duration that could not be parsed; it is never taken from the wire (a message
# carrying that key is re-decoded without it).


class RecordingAvailable(_Recording, frozen=True, tag="recordingAvailable"):
    """A call recording is ready to download (`recordingAvailable`)."""

    event_type: ClassVar[str] = "recordingAvailable"

    event_time: Timestamp | None = None
    account_id: str | None = None
    application_id: str | None = None
    from_: str | None = field(default=None, name="from")
    to: str | None = None
    direction: str | None = None
    call_id: str | None = None
    call_url: str | None = None
    parent_call_id: str | None = None
    recording_id: str | None = None
    media_url: str | None = None
    enqueued_time: Timestamp | None = None
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None
    duration: timedelta | None = None
    file_format: str | None = None
    channels: int | None = None
    tag: str | None = None
    status: str | None = None
    transfer_caller_id: str | None = None
    transfer_to: str | None = None
    malformed_raw: tuple[tuple[str, str], ...] = ()

    def _subject(self) -> tuple[str, str | None]:
        return ("callId", self.call_id)


class ConferenceRecordingAvailable(_Recording, frozen=True, tag="conferenceRecordingAvailable"):
    """A conference recording is ready to download (`conferenceRecordingAvailable`)."""

    event_type: ClassVar[str] = "conferenceRecordingAvailable"

    event_time: Timestamp | None = None
    account_id: str | None = None
    conference_id: str | None = None
    name: str | None = None
    recording_id: str | None = None
    channels: int | None = None
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None
    duration: timedelta | None = None
    file_format: str | None = None
    media_url: str | None = None
    tag: str | None = None
    status: str | None = None
    malformed_raw: tuple[tuple[str, str], ...] = ()

    def _subject(self) -> tuple[str, str | None]:
        return ("conferenceId", self.conference_id)


class OtherEvent(msgspec.Struct, frozen=True):
    """A known Bandwidth callback type that is not a recording; not decoded further."""

    event_type: str


class UnknownEvent(msgspec.Struct, frozen=True):
    """A callback whose eventType this version does not know."""

    event_type: str


RecordingEvent = RecordingAvailable | ConferenceRecordingAvailable
Event = RecordingEvent | OtherEvent | UnknownEvent


class _Envelope(msgspec.Struct, rename="camel"):
    event_type: str


def _parse_timestamp(text: str) -> datetime | None:
    """The one lenient timestamp parser (callback fields, CloudEvents' time in either mode):
    RFC 3339, else what Python's ISO 8601 reader takes; zone-less means UTC; None if neither."""
    try:
        parsed = msgspec.convert(text, datetime)
    except msgspec.ValidationError:
        try:
            # Python accepts what RFC 3339 does not: minute precision, any date/time separator.
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    # Bandwidth's zone-less examples are UTC, like everything else it sends.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _parse_duration(text: str) -> timedelta | None:
    try:
        return msgspec.convert(text, timedelta)
    except msgspec.ValidationError:
        return None


_LENIENT: Final[dict[str, Callable[[str], datetime | timedelta | None]]] = {
    "event_time": _parse_timestamp,
    "start_time": _parse_timestamp,
    "end_time": _parse_timestamp,
    "enqueued_time": _parse_timestamp,
    "duration": _parse_duration,
}


def _string_twin(cls: type[RecordingEvent]) -> type[msgspec.Struct]:
    """A struct shaped like `cls` but with its lenient fields typed as plain strings."""
    fields = [
        (
            f.name,
            str | None if f.name in _LENIENT else f.type,
            field(default=None, name=f.encode_name),
        )
        for f in msgspec.structs.fields(cls)
        if f.name != "malformed_raw"
    ]
    config = cls.__struct_config__
    return msgspec.defstruct(
        f"_Raw{cls.__name__}", fields, tag=config.tag, tag_field=config.tag_field, gc=False
    )


_RawRecordingAvailable = _string_twin(RecordingAvailable)
_RawConferenceRecordingAvailable = _string_twin(ConferenceRecordingAvailable)
_TWINS: Final[dict[type[msgspec.Struct], type[RecordingEvent]]] = {
    _RawRecordingAvailable: RecordingAvailable,
    _RawConferenceRecordingAvailable: ConferenceRecordingAvailable,
}
_LENIENT_PATHS: Final = frozenset(
    f"$.{f.encode_name}"
    for cls in _TWINS.values()
    for f in msgspec.structs.fields(cls)
    if f.name in _LENIENT or f.name == "malformed_raw"
)
_UNREADABLE = (msgspec.MsgspecError, ValueError, RecursionError)


def _error(exc: Exception) -> DecodeError:
    if isinstance(exc, RecursionError):
        return DecodeError("JSON is nested too deeply")
    reason, path = reason_and_path(exc)
    missing = missing_field(reason)
    if missing is not None:
        # msgspec names the enclosing object; point at the absent field itself.
        path = f"{path or '$'}.{missing}"
    return DecodeError(reason, path)


class EventDecoder:
    """Turns Kafka message values into events; build once, call `decode` per message."""

    def __init__(self) -> None:
        # Bound once: this is the per-message hot path.
        self._fast_decode = msgspec.json.Decoder(RecordingEvent).decode
        self._raw = msgspec.json.Decoder(_RawRecordingAvailable | _RawConferenceRecordingAvailable)
        self._envelope = msgspec.json.Decoder(_Envelope)

    def decode(self, data: bytes) -> Event:
        """Classify and decode one message; raises DecodeError, and only that."""
        try:
            event: RecordingEvent = self._fast_decode(data)
        except msgspec.ValidationError as exc:
            recovery = _recovery(exc)
            if recovery == "classify":
                return self._classify(data)
            if recovery == "lenient":
                return self._lenient(data)
            raise _error(exc) from None
        except _UNREADABLE as exc:
            raise _error(exc) from None
        return self._lenient(data) if event.malformed_raw else event

    def _classify(self, data: bytes) -> OtherEvent | UnknownEvent:
        try:
            return _classified(self._envelope.decode(data).event_type)
        except _UNREADABLE as exc:
            raise _error(exc) from None

    def _lenient(self, data: bytes) -> RecordingEvent:
        try:
            raw = self._raw.decode(data)
        except _UNREADABLE as exc:
            raise _error(exc) from None
        return _from_twin(raw)


def _recovery(exc: msgspec.ValidationError, root: str = "$") -> str | None:
    """How to go on after the fast decode failed on the callback at JSON path `root`:
    "classify" (not a recording event), "lenient" (an odd timestamp/duration), or None."""
    path = error_path(exc)
    if path is None or not path.startswith(root) or path[len(root) : len(root) + 1] not in ".[":
        return None
    path = "$" + path[len(root) :]
    if path == "$.eventType":
        return "classify"
    return "lenient" if path.partition("[")[0] in _LENIENT_PATHS else None


def _classified(event_type: str) -> OtherEvent | UnknownEvent:
    return OtherEvent(event_type) if event_type in KNOWN_EVENT_TYPES else UnknownEvent(event_type)


def _from_twin(raw: msgspec.Struct) -> RecordingEvent:
    """The event from its string-typed twin, lenient fields parsed, failures kept as raw text."""
    cls = _TWINS[type(raw)]
    values = msgspec.structs.asdict(raw)
    malformed = []
    for f in msgspec.structs.fields(raw):
        text = values[f.name]
        if f.name in _LENIENT and text is not None:
            values[f.name] = parsed = _LENIENT[f.name](text)
            if parsed is None:
                malformed.append((f.encode_name, text))
    return cls(**values, malformed_raw=tuple(malformed))


decode = EventDecoder().decode


def encode_event(event: RecordingEvent) -> bytes:
    """The event as camelCase JSON as this project reads it: parsed values, no nulls."""
    fields = msgspec.to_builtins(event)
    return msgspec.json.encode(
        {k: v for k, v in fields.items() if v is not None and (v or k != "malformedRaw")}
    )
