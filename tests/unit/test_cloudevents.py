"""CloudEvents envelopes (Kafka protocol binding) decoded per message: pure units, no broker."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from consumer import Context, RecordingEvent
from consumer.cli.samples import recording_event
from consumer.cloudevents import CloudEvent, MessageDecoder
from consumer.devkit.testing import make_event, run_handler
from consumer.errors import DecodeError
from consumer.events import OtherEvent, RecordingAvailable

CALLBACK = recording_event("r-1", "c-1", "complete")
STRUCTURED_HEADERS = (("content-type", b"application/cloudevents+json; charset=utf-8"),)
ATTRIBUTES = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "https://ingress.example.com/bandwidth",
    "type": "com.bandwidth.voice.recording",
    "time": "2026-11-27T10:15:31Z",
}
BINARY_HEADERS = (
    ("ce_specversion", b"1.0"),
    ("ce_id", b"evt-2"),
    ("ce_source", b"/gateway"),
    ("ce_type", b"com.bandwidth.voice.recording"),
    ("ce_time", b"2026-11-27T10:15:32.5Z"),
    ("content-type", b"application/json"),
)


def envelope(data: object, **attributes: object) -> bytes:
    return msgspec.json.encode(
        {**ATTRIBUTES, "datacontenttype": "application/json"} | attributes | {"data": data}
    )


def test_structured_mode_gives_the_callback_and_its_attributes() -> None:
    """The content-type header marks structured mode; data is the callback, time is parsed."""
    event, ce = MessageDecoder("cloudevents").decode(envelope(CALLBACK), STRUCTURED_HEADERS)
    assert isinstance(event, RecordingAvailable)
    assert (event.recording_id, event.status) == ("r-1", "complete")
    assert ce is not None
    assert (ce.id, ce.source, ce.type) == ("evt-1", ATTRIBUTES["source"], ATTRIBUTES["type"])
    assert ce.time == datetime(2026, 11, 27, 10, 15, 31, tzinfo=UTC)
    assert ce.log_fields() == {
        "ce_id": "evt-1",
        "ce_source": ATTRIBUTES["source"],
        "ce_type": ATTRIBUTES["type"],
        "ce_time": "2026-11-27T10:15:31+00:00",
    }


def test_binary_mode_reads_the_attributes_from_headers() -> None:
    """ce_* headers mark binary mode; the value is the callback itself."""
    event, ce = MessageDecoder("auto").decode(msgspec.json.encode(CALLBACK), BINARY_HEADERS)
    assert isinstance(event, RecordingAvailable)
    assert event.recording_id == "r-1"
    assert ce == CloudEvent(
        specversion="1.0",
        id="evt-2",
        source="/gateway",
        type="com.bandwidth.voice.recording",
        time=datetime(2026, 11, 27, 10, 15, 32, 500000, tzinfo=UTC),
    )


def test_binary_mode_attributes_are_read_only_and_decoded_on_access() -> None:
    """A binary-mode envelope reads like any CloudEvent: attributes, log fields, hash, no writes."""
    _, ce = MessageDecoder("cloudevents").decode(msgspec.json.encode(CALLBACK), BINARY_HEADERS)
    assert isinstance(ce, CloudEvent)
    assert ce.log_fields() == {
        "ce_id": "evt-2",
        "ce_source": "/gateway",
        "ce_type": "com.bandwidth.voice.recording",
        "ce_time": "2026-11-27T10:15:32.500000+00:00",
    }
    assert ce.specversion == "1.0"
    assert "evt-2" in repr(ce)
    assert dict(ce.__rich_repr__())["id"] == "evt-2"
    assert hash(ce) == hash(CloudEvent("1.0", "evt-2", "/gateway", ce.type, ce.time))
    with pytest.raises(AttributeError):
        ce.id = "other"  # type: ignore[misc]


def test_a_cloudevents_content_type_wins_over_ce_headers() -> None:
    """The binding's rule: a structured content-type means structured mode, ce_* or not."""
    headers = (*BINARY_HEADERS[:4], STRUCTURED_HEADERS[0])
    event, ce = MessageDecoder("auto").decode(envelope(CALLBACK), headers)
    assert isinstance(event, RecordingAvailable)
    assert ce is not None
    assert ce.id == "evt-1"


def test_auto_takes_unmarked_messages_as_raw_and_finds_unmarked_envelopes() -> None:
    """auto: no CloudEvents headers means raw, unless the value is an envelope after all."""
    decoder = MessageDecoder("auto")
    event, ce = decoder.decode(msgspec.json.encode(CALLBACK), ())
    assert isinstance(event, RecordingAvailable)
    assert ce is None
    event, ce = decoder.decode(envelope(CALLBACK), (("other", b"x"),))
    assert isinstance(event, RecordingAvailable)
    assert ce is not None
    assert ce.id == "evt-1"
    with pytest.raises(DecodeError) as raised:
        decoder.decode(b'{"eventType":"recordingAvailable","channels":"one"}', ())
    assert raised.value.path == "$.channels"  # the raw error, not the envelope's


def test_raw_mode_ignores_cloudevents_headers() -> None:
    """raw: the value must be the callback whatever the headers say."""
    with pytest.raises(DecodeError):
        MessageDecoder("raw").decode(envelope(CALLBACK), STRUCTURED_HEADERS)
    event, ce = MessageDecoder("raw").decode(msgspec.json.encode(CALLBACK), BINARY_HEADERS)
    assert ce is None
    assert isinstance(event, RecordingAvailable)


@pytest.mark.parametrize(
    ("value", "headers", "path"),
    [
        (msgspec.json.encode(CALLBACK), (), "$.specversion"),
        (envelope(CALLBACK | {"channels": "one"}), STRUCTURED_HEADERS, "$.data.channels"),
        (envelope(None), STRUCTURED_HEADERS, "$.data"),
        (b'{"specversion":"1.0","id":"x","source":"s","type":"t"}', STRUCTURED_HEADERS, "$.data"),
        (msgspec.json.encode(CALLBACK), BINARY_HEADERS[:1], "ce_id"),
        (msgspec.json.encode(CALLBACK), (*BINARY_HEADERS[:3], BINARY_HEADERS[1]), "ce_type"),
    ],
    ids=[
        "raw value",
        "bad data field",
        "null data",
        "no data",
        "binary without ce_id",
        "binary with ce_id twice, without ce_type",
    ],
)
def test_cloudevents_mode_errors_name_the_field(
    value: bytes, headers: tuple[tuple[str, bytes], ...], path: str
) -> None:
    """cloudevents: what is not a usable CloudEvent is a DecodeError pointing at the field."""
    with pytest.raises(DecodeError) as raised:
        MessageDecoder("cloudevents").decode(value, headers)
    assert raised.value.path == path


def test_structured_envelopes_keep_the_lenient_and_classifying_paths() -> None:
    """Odd timestamps inside data are kept as raw text; non-recording callbacks are classified."""
    decoder = MessageDecoder("cloudevents")
    sloppy = CALLBACK | {"endTime": "not a time"}
    event, ce = decoder.decode(envelope(sloppy), STRUCTURED_HEADERS)
    assert isinstance(event, RecordingAvailable)
    assert event.end_time is None
    assert event.raw_value("endTime") == "not a time"
    assert ce is not None
    assert ce.id == "evt-1"
    assert type(ce) is CloudEvent
    event, ce = decoder.decode(envelope({"eventType": "answer"}), STRUCTURED_HEADERS)
    assert event == OtherEvent("answer")
    assert ce is not None
    assert ce.type == ATTRIBUTES["type"]


def test_an_odd_envelope_time_does_not_lose_the_callback() -> None:
    """A time that is no RFC 3339 timestamp is read leniently, or None; the event is kept."""
    decoder = MessageDecoder("cloudevents")
    for time, expected in (
        ("2026-11-27 10:15", datetime(2026, 11, 27, 10, 15, tzinfo=UTC)),
        ("yesterday", None),
    ):
        event, ce = decoder.decode(envelope(CALLBACK, time=time), STRUCTURED_HEADERS)
        assert isinstance(event, RecordingAvailable)
        assert ce is not None
        assert ce.time == expected
    headers = (*BINARY_HEADERS[:4], ("ce_time", b"soon"))
    _, ce = decoder.decode(msgspec.json.encode(CALLBACK), headers)
    assert ce is not None
    assert ce.time is None


@pytest.mark.parametrize(
    "time",
    [
        "2026-11-27t10:15:31.5z",  # RFC 3339 allows lower case; Python's ISO reader does not
        "2026-11-27T10:15:31.123456789Z",  # nanoseconds: RFC 3339 rounds, Python truncates
        "2026-11-27 10:15",
        "2026-11-27T10:15:31",  # zone-less: UTC
        "yesterday",
    ],
)
def test_the_time_reads_the_same_in_a_header_as_in_an_envelope(time: str) -> None:
    """Binary mode's ce_time header and a structured envelope's time go through the one lenient
    timestamp parser: the same text gives the same time (or None) either way."""
    decoder = MessageDecoder("cloudevents")
    _, structured = decoder.decode(envelope(CALLBACK, time=time), STRUCTURED_HEADERS)
    headers = (*BINARY_HEADERS[:4], ("ce_time", time.encode()))
    _, binary = decoder.decode(msgspec.json.encode(CALLBACK), headers)
    assert structured is not None
    assert binary is not None
    assert binary.time == structured.time
    assert (binary.time is None) == (time == "yesterday")


async def test_handlers_see_the_envelope_in_the_testing_kit() -> None:
    """run_handler hands `envelope` to the handler as ctx.envelope and binds its log fields."""

    class Notes:
        async def handle(self, event: RecordingEvent, ctx: Context) -> None:
            assert ctx.envelope is not None
            ctx.log.info("seen", source=ctx.envelope.source)

    ce = CloudEvent(specversion="1.0", id="evt-9", source="/gw", type="t")
    run = await run_handler(Notes(), make_event(), envelope=ce)
    assert run.error is None
    assert [(e["ce_id"], e["source"]) for e in run.logs] == [("evt-9", "/gw")]
