"""Every kind of message the topic can carry, consumed to the end through the real broker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec
from structlog.testing import capture_logs

from consumer.cli.produce import produce
from consumer.cli.samples import recording_event
from consumer.engine.worker import Worker
from tests._support.kafka_helpers import Recorder, committed_and_end, read_topic, settings_for

CONFERENCE = {
    "eventType": "conferenceRecordingAvailable",
    "eventTime": "2022-06-17T22:19:40.375Z",
    "accountId": "9900000",
    "conferenceId": "conf-fe23a767-a75a5b77-20c5-4cca-b581-cbbf0776eca9",
    "name": "weekly",
    "recordingId": "r-fbe05094-9fd2afe9-bf5b-4c68-820a-41a01c1c5833",
    "channels": 1,
    "duration": "PT13.67S",
    "fileFormat": "mp3",
    "status": "complete",
}


def messages() -> list[tuple[str, bytes]]:
    """(what it is, value) for one message of each kind."""
    encode = msgspec.json.encode
    kinds = [
        (f"status {status}", encode(recording_event(f"r-{status}", f"c-{status}", status)))
        for status in ("processing", "partial", "complete", "deleted", "error", "archived")
    ]
    sloppy = recording_event("r-sloppy", "c-sloppy", "complete") | {"endTime": "not a time"}
    return [
        *kinds,
        ("conference", encode(CONFERENCE)),
        ("malformed timestamp", encode(sloppy)),
        ("other type", b'{"eventType":"answer","callId":"c-x"}'),
        ("unknown type", b'{"eventType":"hologramReady"}'),
        ("not json", b"<html>502 Bad Gateway</html>"),
        ("wrong type", b'{"eventType":"recordingAvailable","recordingId":"r-w","channels":"one"}'),
    ]


async def test_each_kind_has_its_outcome_and_everything_is_committed(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """Recordings are handled, others skipped, bad ones dead-lettered; everything committed."""
    await create_topic(kafka_bootstrap, unique_name, partitions=1)
    settings = settings_for(kafka_bootstrap, unique_name, unique_name)
    kinds = messages()
    await produce(settings.kafka, unique_name, [(None, value) for _, value in kinds])
    recorder = Recorder()
    worker = Worker(settings, {"log": recorder})

    with capture_logs() as logs:
        await asyncio.wait_for(worker.run(until_idle=1.0), timeout=60)

    outcomes = {
        entry["offset"]: entry
        for entry in logs
        if entry["event"] == "message" and entry["outcome"] != "retried"
    }
    assert sorted(outcomes) == list(range(len(kinds)))
    expected = ["handled"] * 8 + ["skipped", "skipped", "undecodable", "undecodable"]
    assert [outcomes[n]["outcome"] for n in range(len(kinds))] == expected
    assert [outcomes[n]["log_level"] for n in (8, 9, 10, 11)] == [
        "debug",
        "warning",
        "error",
        "error",
    ]
    assert outcomes[6]["conferenceId"] == CONFERENCE["conferenceId"]
    assert outcomes[11]["path"] == "$.channels"
    assert outcomes[10]["path"] is None
    for n in range(6):
        assert outcomes[n]["status"] == kinds[n][0].removeprefix("status ")
        assert outcomes[n]["handlers"] == ("log",)
    malformed = [e for e in logs if e["event"] == "malformed fields kept as raw text"]
    assert [(e["offset"], e["fields"]) for e in malformed] == [(7, ["endTime"])]

    assert len(recorder.seen) == 8
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end == {0: len(kinds)}
    dead = await read_topic(kafka_bootstrap, f"{unique_name}.dlq")
    assert sorted(record.value for record in dead) == sorted([kinds[10][1], kinds[11][1]])
