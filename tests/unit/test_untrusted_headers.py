"""What a producer controls, read by the intake: header values that are null or not UTF-8, and
anything else that fails while a record becomes a job. Pure units, no broker; the same attacks
against a worker process are in tests/integration/worker/test_poison_records.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from consumer.cli.samples import recording_event
from consumer.deadletters import headers as dl
from consumer.deadletters.headers import Failure, dead_letter_headers
from consumer.engine.intake import Intake, Job, Undecodable
from consumer.errors import DecodeError
from consumer.handler_api import Record
from consumer.settings.config import load_settings

CALLBACK = msgspec.json.encode(recording_event("r-1", "c-1", "complete"))
BINARY = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"evt-1"),
    ("ce_source", b"/gateway"),
    ("ce_type", b"com.bandwidth.voice.recording"),
]


@dataclass(frozen=True)
class Message:
    """A Kafka record as aiokafka hands it over."""

    value: bytes | None
    headers: tuple[tuple[str, Any], ...]
    topic: str = "t"
    partition: int = 0
    offset: int = 7
    key: bytes | None = None
    timestamp: int = 0


def intake(envelope: str = "auto") -> Intake[str]:
    settings = load_settings(environ={"RECORDING_CONSUMER__EVENTS__ENVELOPE": envelope})
    return Intake(settings, {"log": "log"})


def test_a_null_content_type_counts_as_absent() -> None:
    """auto mode, a content-type header without a value: the raw callback is read, no crash."""
    work = intake()(Message(CALLBACK, (("content-type", None),)))
    assert type(work) is Job
    assert (work.event.recording_id, work.envelope) == ("r-1", None)


def test_a_null_required_ce_header_makes_the_message_undecodable() -> None:
    """A null ce_id beside the other ce_* headers is a missing ce_id: undecodable, with the
    header named, not an error later when the envelope is first read."""
    headers = tuple((name, None if name == "ce_id" else value) for name, value in BINARY)
    work = intake()(Message(CALLBACK, headers))
    assert type(work) is Undecodable
    assert work.error.path == "ce_id"
    assert "without a ce_id header" in work.error.reason


def test_a_null_ce_specversion_is_no_binary_mode() -> None:
    """Without a specversion value the ce_* headers mark nothing: the raw callback is read."""
    headers = (("ce_specversion", None), *BINARY[1:])
    work = intake()(Message(CALLBACK, headers))
    assert type(work) is Job
    assert work.envelope is None


def test_binary_mode_attributes_that_are_not_utf8_or_null_still_read() -> None:
    """ce_* values that are not UTF-8 read with replacement characters; a null ce_time (or
    a later null duplicate of ce_id) is no time (no id change): reading the envelope, which
    every handled message's log line does, never raises."""
    headers = (
        ("ce_specversion", b"1.0"),
        ("ce_id", b"\xff\xfeid"),
        ("ce_source", b"/gw\xc3"),
        ("ce_type", b"t"),
        ("ce_time", None),
        ("ce_id", None),
    )
    work = intake("cloudevents")(Message(CALLBACK, headers))
    assert type(work) is Job
    assert work.envelope is not None
    assert work.envelope.log_fields() == {
        "ce_id": "\ufffd\ufffdid",
        "ce_source": "/gw\ufffd",
        "ce_type": "t",
    }
    assert work.envelope.time is None


def test_any_failure_while_reading_a_record_makes_it_undecodable() -> None:
    """A header value of a type no decoder expects fails where nobody foresaw it: the record is
    undecodable with the exception named, never an exception out of the intake."""
    work = intake()(Message(CALLBACK, (("content-type", 12),)))
    assert type(work) is Undecodable
    assert work.error.reason.startswith("unreadable message: AttributeError")
    assert work.record.offset == 7


def test_raw_mode_ignores_null_headers() -> None:
    """The default raw mode never reads headers: null ones change nothing."""
    work = intake("raw")(Message(CALLBACK, (("content-type", None), ("ce_id", None))))
    assert type(work) is Job


def test_dead_letter_headers_keep_null_values_and_make_names_encodable() -> None:
    """A null original header goes to the dead letter as null; a name that could not be encoded
    as UTF-8 (a lone surrogate) is escaped, so the producer can always send the dead letter."""
    record = Record("t", 0, 1, None, (("n", None), ("bad\udcff", b"v"), ("ok", b"\xff")), 0)
    failure = Failure.from_exception(DecodeError("x"), handler=None)
    headers = dead_letter_headers(record, "g", failure, 100)
    assert headers[:3] == [("n", None), ("bad\\udcff", b"v"), ("ok", b"\xff")]
    for name, _ in headers:
        name.encode("utf-8")
    assert dict(headers)[dl.ERROR_MESSAGE] == b"x"
