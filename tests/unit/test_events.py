"""Tests for consumer.events: decoding Bandwidth callbacks into events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.errors import DecodeError
from consumer.events import (
    KNOWN_EVENT_TYPES,
    RECORDING_EVENT_TYPES,
    ConferenceRecordingAvailable,
    Direction,
    EventDecoder,
    FileFormat,
    OtherEvent,
    RecordingAvailable,
    Status,
    UnknownEvent,
    decode,
)

CALL_ID = "c-95ac8d6e-1a31c52e-b38f-4198-93c1-51633ec68f8d"
RECORDING_ID = "r-115da407-e3d9-4ea7-889f-5f4ad7386a80"
CALL_URL = f"https://voice.bandwidth.com/api/v2/accounts/55555555/calls/{CALL_ID}"
MEDIA_URL = f"{CALL_URL}/recordings/{RECORDING_ID}/media"

DOC_EXAMPLE = (
    b'{"eventType":"recordingAvailable","eventTime":"2019-09-13T16:49:40.500",'
    b'"accountId":"55555555","applicationId":"7fc9698a-b04a-468b-9e8f-91238c0d0086",'
    b'"to":"+15553334444","from":"+15551112222","direction":"outbound",'
    b'"callId":"c-95ac8d6e-1a31c52e-b38f-4198-93c1-51633ec68f8d",'
    b'"recordingId":"r-115da407-e3d9-4ea7-889f-5f4ad7386a80","channels":1,'
    b'"startTime":"2019-09-13T16:48:29.235Z","endTime":"2019-09-13T16:48:48.890Z",'
    b'"duration":"PT20.056S","fileFormat":"wav",'
    b'"callUrl":"https://voice.bandwidth.com/api/v2/accounts/55555555/calls/'
    b'c-95ac8d6e-1a31c52e-b38f-4198-93c1-51633ec68f8d",'
    b'"mediaUrl":"https://voice.bandwidth.com/api/v2/accounts/55555555/calls/'
    b"c-95ac8d6e-1a31c52e-b38f-4198-93c1-51633ec68f8d/recordings/"
    b'r-115da407-e3d9-4ea7-889f-5f4ad7386a80/media","status":"complete"}'
)

FULL: dict[str, Any] = {
    "eventType": "recordingAvailable",
    "eventTime": "2022-06-17T22:19:40.375Z",
    "accountId": "9900000",
    "applicationId": "04e88489-df02-4e34-a0ee-27a91849555f",
    "from": "+15555555555",
    "to": "+15555555556",
    "direction": "inbound",
    "callId": "c-15ac29a2-1331029c-2cb0-4a07-b215-b22865662d85",
    "callUrl": "https://voice.bandwidth.com/api/v2/accounts/9900000/calls/c-15ac29a2",
    "parentCallId": "c-25ac29a2-1331029c-2cb0-4a07-b215-b22865662d85",
    "recordingId": "r-fbe05094-9fd2afe9-bf5b-4c68-820a-41a01c1c5833",
    "mediaUrl": "https://voice.bandwidth.com/api/v2/accounts/9900000/calls/c-15ac29a2/media",
    "enqueuedTime": "2022-06-17T22:20:00.000Z",
    "startTime": "2022-06-17T22:19:40.375Z",
    "endTime": "2022-06-17T22:20:54.045Z",
    "duration": "PT13.67S",
    "fileFormat": "mp3",
    "channels": 2,
    "tag": "exampleTag",
    "status": "partial",
    "transferCallerId": "+15555555557",
    "transferTo": "+15555555558",
}

CONFERENCE: dict[str, Any] = {
    "eventType": "conferenceRecordingAvailable",
    "eventTime": "2022-06-17T22:19:40.375Z",
    "accountId": "9900000",
    "conferenceId": "conf-fe23a767-a75a5b77-20c5-4cca-b581-cbbf0776eca9",
    "name": "my-conference-name",
    "recordingId": "r-fbe05094-9fd2afe9-bf5b-4c68-820a-41a01c1c5833",
    "channels": 1,
    "startTime": "2022-06-17T22:19:40.375Z",
    "endTime": "2022-06-17T22:20:54.045Z",
    "duration": "PT1.415S",
    "fileFormat": "wav",
    "mediaUrl": (
        "https://voice.bandwidth.com/api/v2/accounts/9900000/conferences/"
        "conf-fe23a767-a75a5b77-20c5-4cca-b581-cbbf0776eca9/recordings/"
        "r-fbe05094-9fd2afe9-bf5b-4c68-820a-41a01c1c5833/media"
    ),
    "tag": None,
    "status": "complete",
}


def at(
    year: int, month: int, day: int, hour: int, minute: int, second: int = 0, us: int = 0
) -> datetime:
    """A UTC datetime, for brevity."""
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def recording(**fields: Any) -> RecordingAvailable:
    """Decode a recordingAvailable message carrying `fields` (JSON names), asserting its type."""
    event = decode(json.dumps({"eventType": "recordingAvailable", **fields}).encode())
    assert isinstance(event, RecordingAvailable)
    return event


def decode_error(data: bytes) -> DecodeError:
    """The DecodeError that decoding `data` raises."""
    with pytest.raises(DecodeError) as info:
        decode(data)
    return info.value


# --- documented examples ---------------------------------------------------------------


def test_doc_example_decodes_field_by_field() -> None:
    """The webhook docs' recordingAvailable example decodes to the expected values."""
    event = decode(DOC_EXAMPLE)
    assert isinstance(event, RecordingAvailable)
    assert event.event_type == "recordingAvailable"
    assert event.event_time == at(2019, 9, 13, 16, 49, 40, 500000)
    assert event.account_id == "55555555"
    assert event.application_id == "7fc9698a-b04a-468b-9e8f-91238c0d0086"
    assert event.to == "+15553334444"
    assert event.from_ == "+15551112222"
    assert event.direction == Direction.OUTBOUND
    assert event.call_id == CALL_ID
    assert event.recording_id == RECORDING_ID
    assert event.channels == 1
    assert event.start_time == at(2019, 9, 13, 16, 48, 29, 235000)
    assert event.end_time == at(2019, 9, 13, 16, 48, 48, 890000)
    assert event.duration == timedelta(seconds=20, milliseconds=56)
    assert event.file_format == FileFormat.WAV
    assert event.call_url == CALL_URL
    assert event.media_url == MEDIA_URL
    assert event.status == Status.COMPLETE
    assert event.parent_call_id is None
    assert event.enqueued_time is None
    assert event.tag is None
    assert event.transfer_caller_id is None
    assert event.transfer_to is None
    assert event.malformed == ()


def test_fully_populated_event_decodes_field_by_field() -> None:
    """A recordingAvailable with every field set decodes every field."""
    event = decode(json.dumps(FULL).encode())
    assert isinstance(event, RecordingAvailable)
    assert event.event_time == at(2022, 6, 17, 22, 19, 40, 375000)
    assert event.account_id == "9900000"
    assert event.application_id == FULL["applicationId"]
    assert event.from_ == "+15555555555"
    assert event.to == "+15555555556"
    assert event.direction == "inbound"
    assert event.call_id == FULL["callId"]
    assert event.call_url == FULL["callUrl"]
    assert event.parent_call_id == FULL["parentCallId"]
    assert event.recording_id == FULL["recordingId"]
    assert event.media_url == FULL["mediaUrl"]
    assert event.enqueued_time == at(2022, 6, 17, 22, 20)
    assert event.start_time == at(2022, 6, 17, 22, 19, 40, 375000)
    assert event.end_time == at(2022, 6, 17, 22, 20, 54, 45000)
    assert event.duration == timedelta(seconds=13, milliseconds=670)
    assert event.file_format == "mp3"
    assert event.channels == 2
    assert event.tag == "exampleTag"
    assert event.status == "partial"
    assert event.transfer_caller_id == "+15555555557"
    assert event.transfer_to == "+15555555558"
    assert event.malformed == ()


def test_conference_example_decodes_field_by_field() -> None:
    """A conferenceRecordingAvailable decodes to its own type with conferenceId and name."""
    event = decode(json.dumps(CONFERENCE).encode())
    assert isinstance(event, ConferenceRecordingAvailable)
    assert event.event_type == "conferenceRecordingAvailable"
    assert event.event_time == at(2022, 6, 17, 22, 19, 40, 375000)
    assert event.account_id == "9900000"
    assert event.conference_id == CONFERENCE["conferenceId"]
    assert event.name == "my-conference-name"
    assert event.recording_id == CONFERENCE["recordingId"]
    assert event.channels == 1
    assert event.start_time == at(2022, 6, 17, 22, 19, 40, 375000)
    assert event.end_time == at(2022, 6, 17, 22, 20, 54, 45000)
    assert event.duration == timedelta(seconds=1, milliseconds=415)
    assert event.file_format == "wav"
    assert event.media_url == CONFERENCE["mediaUrl"]
    assert event.tag is None
    assert event.status == "complete"


def test_minute_precision_timestamp_from_sdk_test() -> None:
    """The SDK test's `2022-06-17T22:20Z` (no seconds) parses as an aware datetime."""
    event = recording(eventTime="2022-06-17T22:20Z")
    assert event.event_time == at(2022, 6, 17, 22, 20)
    assert event.malformed == ()


def test_docs_dash_separated_timestamp_is_read_leniently() -> None:
    """The docs' `2019-09-13-16:48:27.198Z` is read as the time it obviously means."""
    event = recording(startTime="2019-09-13-16:48:27.198Z")
    assert event.start_time == at(2019, 9, 13, 16, 48, 27, 198000)
    assert event.malformed == ()


def test_other_timestamp_offsets_are_kept() -> None:
    """A non-UTC offset is preserved, not discarded."""
    event = recording(endTime="2022-06-17T22:20:00+02:00")
    assert event.end_time == at(2022, 6, 17, 20, 20)
    assert event.end_time is not None
    assert event.end_time.utcoffset() == timedelta(hours=2)


# --- tolerance -------------------------------------------------------------------------


def test_unknown_status_keeps_raw_string() -> None:
    """An undocumented status decodes and keeps its raw value."""
    event = recording(status="archived")
    assert event.status == "archived"
    assert event.status not in set(Status)


def test_unknown_direction_keeps_raw_string() -> None:
    """An undocumented direction decodes and keeps its raw value."""
    assert recording(direction="sideways").direction == "sideways"


def test_unknown_file_format_keeps_raw_string() -> None:
    """An undocumented fileFormat decodes and keeps its raw value."""
    assert recording(fileFormat="ogg").file_format == "ogg"


def test_zone_less_timestamp_is_utc() -> None:
    """A timestamp without a zone is taken as UTC and comes back aware."""
    event = recording(eventTime="2019-09-13T16:49:40.500")
    assert event.event_time == at(2019, 9, 13, 16, 49, 40, 500000)
    assert event.event_time is not None
    assert event.event_time.tzinfo is UTC
    assert event.malformed == ()


def test_malformed_timestamp_is_none_listed_and_raw_kept() -> None:
    """An unparseable timestamp becomes None, is listed in malformed, and keeps its text."""
    event = recording(eventTime="yesterday", startTime="2022-06-17T22:19:40.375Z")
    assert event.event_time is None
    assert event.malformed == ("eventTime",)
    assert event.raw_value("eventTime") == "yesterday"
    assert event.raw_value("startTime") is None
    assert event.start_time == at(2022, 6, 17, 22, 19, 40, 375000)


def test_malformed_duration_is_none_listed_and_raw_kept() -> None:
    """An unparseable duration becomes None, is listed in malformed, and keeps its text."""
    event = recording(duration="P1Y", recordingId="r-1")
    assert event.duration is None
    assert event.malformed == ("duration",)
    assert event.raw_value("duration") == "P1Y"
    assert event.recording_id == "r-1"


def test_several_malformed_fields_are_all_listed() -> None:
    """Every malformed field is reported, in wire-field order."""
    event = recording(endTime="later", duration="long", eventTime="2019-09-13T16:49:40.500")
    assert event.malformed == ("endTime", "duration")
    assert event.event_time == at(2019, 9, 13, 16, 49, 40, 500000)


def test_malformed_conference_timestamp_is_tolerated() -> None:
    """Conference recordings get the same timestamp tolerance."""
    event = decode(json.dumps({**CONFERENCE, "startTime": "soon"}).encode())
    assert isinstance(event, ConferenceRecordingAvailable)
    assert event.malformed == ("startTime",)
    assert event.conference_id == CONFERENCE["conferenceId"]


def test_nullable_fields_accept_null() -> None:
    """mediaUrl, tag and enqueuedTime may be null."""
    event = recording(mediaUrl=None, tag=None, enqueuedTime=None, recordingId="r-1")
    assert (event.media_url, event.tag, event.enqueued_time) == (None, None, None)
    assert event.malformed == ()


def test_unknown_fields_are_ignored() -> None:
    """Fields this version does not know are skipped, whatever their shape."""
    event = recording(recordingId="r-1", newThing={"nested": [1, 2, None]}, answerTime="x")
    assert event.recording_id == "r-1"


def test_wire_cannot_forge_malformed_list() -> None:
    """A message carrying the internal malformedRaw key cannot fake malformed fields."""
    assert recording(malformedRaw=[["eventTime", "x"]], recordingId="r-1").malformed == ()
    assert recording(malformedRaw="junk").malformed == ()


def test_empty_object_with_event_type_decodes_to_all_none() -> None:
    """Every field is optional."""
    event = recording()
    assert event == RecordingAvailable()
    assert event.ordering_key is None


# --- exactness -------------------------------------------------------------------------


def test_not_json_is_a_decode_error() -> None:
    """Bytes that are not JSON raise DecodeError for the whole message."""
    error = decode_error(b"not json")
    assert "malformed" in error.reason
    assert error.path is None


def test_json_array_is_a_decode_error() -> None:
    """A JSON array is not an event."""
    error = decode_error(b'[{"eventType": "recordingAvailable"}]')
    assert "object" in error.reason
    assert error.path is None


def test_json_number_is_a_decode_error() -> None:
    """A JSON number is not an event."""
    assert decode_error(b"42").path is None


def test_missing_event_type_is_a_decode_error() -> None:
    """An object without eventType cannot be classified."""
    error = decode_error(b'{"recordingId": "r-1"}')
    assert "eventType" in error.reason
    assert error.path == "$.eventType"


def test_string_channels_is_a_decode_error_at_its_path() -> None:
    """`channels: "one"` is rejected, naming $.channels."""
    error = decode_error(b'{"eventType": "recordingAvailable", "channels": "one"}')
    assert error.path == "$.channels"
    assert "int" in error.reason
    assert str(error) == f"{error.reason} (at $.channels)"


def test_numeric_status_is_a_decode_error() -> None:
    """`status: 5` is a wrong type, not an unknown status."""
    assert decode_error(b'{"eventType": "recordingAvailable", "status": 5}').path == "$.status"


def test_non_string_timestamp_is_a_decode_error() -> None:
    """A timestamp of the wrong JSON type is an error, not a malformed value."""
    error = decode_error(b'{"eventType": "recordingAvailable", "eventTime": 5}')
    assert error.path == "$.eventTime"


def test_wrong_type_after_malformed_timestamp_is_still_an_error() -> None:
    """The lenient path still rejects wrong types elsewhere in the message."""
    error = decode_error(b'{"eventType":"recordingAvailable","eventTime":"x","channels":"one"}')
    assert error.path == "$.channels"


def test_non_string_event_type_is_a_decode_error() -> None:
    """eventType must be a string."""
    assert decode_error(b'{"eventType": 5}').path == "$.eventType"


def test_deeply_nested_json_is_a_decode_error() -> None:
    """Pathological nesting raises DecodeError, not RecursionError."""
    nested = b'{"eventType":"recordingAvailable","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert decode_error(nested).path is None


def test_invalid_utf8_is_a_decode_error() -> None:
    """Bytes that are not UTF-8 raise DecodeError, not UnicodeError."""
    decode_error(b'{"eventType": "recording\xffAvailable"}')


# --- classification --------------------------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(KNOWN_EVENT_TYPES - RECORDING_EVENT_TYPES))
def test_known_event_types_are_recognised(event_type: str) -> None:
    """Every known eventType other than the recording ones becomes an OtherEvent."""
    event = decode(json.dumps({"eventType": event_type, "callId": "c-1"}).encode())
    assert event == OtherEvent(event_type)


def test_other_event_is_not_decoded_further() -> None:
    """An OtherEvent's fields are not type-checked."""
    event = decode(b'{"eventType": "transcriptionAvailable", "channels": "one"}')
    assert event == OtherEvent("transcriptionAvailable")


def test_unknown_event_type_is_classified_unknown() -> None:
    """An eventType nobody has documented becomes an UnknownEvent."""
    assert decode(b'{"eventType": "recordingTeleported"}') == UnknownEvent("recordingTeleported")


def test_event_type_appearing_late_is_classified() -> None:
    """eventType need not be the first key."""
    assert decode(b'{"callId": "c-1", "eventType": "answer"}') == OtherEvent("answer")


# --- summary and ordering key ----------------------------------------------------------


def test_summary_of_call_recording() -> None:
    """summary() names the event, status and ids, camelCase."""
    assert decode(DOC_EXAMPLE).summary() == {  # type: ignore[union-attr]
        "eventType": "recordingAvailable",
        "status": "complete",
        "recordingId": RECORDING_ID,
        "callId": CALL_ID,
        "accountId": "55555555",
    }


def test_summary_of_conference_recording_omits_none() -> None:
    """summary() uses conferenceId for conferences and leaves out absent values."""
    event = decode(b'{"eventType":"conferenceRecordingAvailable","conferenceId":"conf-1"}')
    assert isinstance(event, ConferenceRecordingAvailable)
    assert event.summary() == {
        "eventType": "conferenceRecordingAvailable",
        "conferenceId": "conf-1",
    }


def test_ordering_key_is_recording_id() -> None:
    """ordering_key is the recordingId."""
    assert recording(recordingId="r-9").ordering_key == "r-9"


def test_decoder_instances_are_independent_of_module_decode() -> None:
    """A worker-built EventDecoder gives the same results as the module-level decode."""
    assert EventDecoder().decode(DOC_EXAMPLE) == decode(DOC_EXAMPLE)


# --- properties ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
FIELD_NAMES = sorted(set(FULL) | set(CONFERENCE) | {"malformedRaw"})


def decodes_or_raises_decode_error(data: bytes) -> None:
    """Assert decode returns an event or raises DecodeError; anything else propagates."""
    try:
        event = decode(data)
    except DecodeError:
        return
    assert isinstance(
        event, RecordingAvailable | ConferenceRecordingAvailable | OtherEvent | UnknownEvent
    )


@given(st.binary())
def test_arbitrary_bytes_never_escape_decode_error(data: bytes) -> None:
    """Arbitrary bytes decode or raise DecodeError; nothing else escapes."""
    decodes_or_raises_decode_error(data)


@given(json_values)
def test_arbitrary_json_never_escapes_decode_error(value: Any) -> None:
    """Arbitrary JSON values decode or raise DecodeError; nothing else escapes."""
    decodes_or_raises_decode_error(json.dumps(value).encode())


@given(
    st.sampled_from(["recordingAvailable", "conferenceRecordingAvailable"]),
    st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(), json_values),
)
def test_arbitrary_recording_fields_never_escape_decode_error(
    event_type: str, fields: dict[str, Any]
) -> None:
    """Recording events with arbitrary field values decode or raise DecodeError."""
    decodes_or_raises_decode_error(json.dumps({**fields, "eventType": event_type}).encode())


LENIENT_FIELDS = {
    "eventTime": "event_time",
    "startTime": "start_time",
    "endTime": "end_time",
    "enqueuedTime": "enqueued_time",
    "duration": "duration",
}


@given(st.dictionaries(st.sampled_from(sorted(LENIENT_FIELDS)), st.text()))
def test_arbitrary_timestamp_text_is_parsed_or_listed(fields: dict[str, str]) -> None:
    """Any string in a timestamp/duration field is parsed (aware) or listed as malformed."""
    event = recording(**fields)
    for name, text in fields.items():
        parsed = getattr(event, LENIENT_FIELDS[name])
        if parsed is None:
            assert name in event.malformed
            assert event.raw_value(name) == text
        else:
            assert name not in event.malformed
            assert isinstance(parsed, timedelta) or parsed.tzinfo is not None
