"""Dead letters put back and handled; Bandwidth's repeated callbacks dropped. Real broker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from structlog.testing import capture_logs

from consumer.cli.produce import produce
from consumer.cli.samples import recording_event
from consumer.deadletters import headers as dl
from consumer.deadletters.headers import dlq_fields
from consumer.engine.worker import Worker
from consumer.errors import PermanentFailure
from consumer.events import RecordingEvent
from consumer.handler_api import Context
from tests._support.kafka_helpers import (
    REPO,
    committed_and_end,
    read_topic,
    recording_message,
    settings_for,
)


@dataclass
class Switchable:
    """Refuses `broken` recordings permanently until `broken` is emptied."""

    broken: set[str]
    handled: list[tuple[str | None, str | None]] = field(default_factory=list)

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        if event.recording_id in self.broken:
            raise PermanentFailure("storage bucket missing")
        self.handled.append((event.recording_id, event.status))


def cli(bootstrap: str, topic: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`recording-consumer <args>` against `topic` (and a group of the same name)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RECORDING_CONSUMER__KAFKA__TOPIC": topic,
        "RECORDING_CONSUMER__KAFKA__GROUP_ID": topic,
    }
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_replayed_dead_letters_are_handled_and_replay_is_not_repeated(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """`dlq replay` puts a dead letter back, the worker handles it, a second replay does nothing."""
    await create_topic(kafka_bootstrap, unique_name)
    settings = settings_for(kafka_bootstrap, unique_name, unique_name)
    await produce(
        settings.kafka, unique_name, [recording_message("r-ok"), recording_message("r-bad")]
    )
    handler = Switchable(broken={"r-bad"})
    await asyncio.wait_for(Worker(settings, {"log": handler}).run(until_idle=1.0), 60)
    assert handler.handled == [("r-ok", "complete")]

    result = cli(kafka_bootstrap, unique_name, "dlq", "replay", "--error-class", "PermanentFailure")
    assert result.returncode == 0, result.stderr
    assert "replayed 1 dead letters" in result.stderr
    handler.broken.clear()  # the operator fixed the bucket
    await asyncio.wait_for(Worker(settings, {"log": handler}).run(until_idle=1.0), 60)
    assert handler.handled == [("r-ok", "complete"), ("r-bad", "complete")]

    _, end_before = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    again = cli(kafka_bootstrap, unique_name, "dlq", "replay")
    assert again.returncode == 0, again.stderr
    assert "replayed 0 dead letters" in again.stderr
    committed, end_after = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert end_after == end_before == committed == {0: 3}


@pytest.mark.parametrize(("window", "expected"), [(10_000, 2), (0, 3)])
async def test_bandwidth_retries_are_dropped_within_the_window(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    window: int,
    expected: int,
) -> None:
    """A repeated (recordingId, eventType, status) is dropped as a duplicate; window 0 keeps it."""
    await create_topic(kafka_bootstrap, unique_name)
    settings = settings_for(
        kafka_bootstrap, unique_name, unique_name, ENGINE__DEDUPE_WINDOW=str(window)
    )
    repeated = recording_message("r-1")
    await produce(
        settings.kafka, unique_name, [repeated, repeated, recording_message("r-1", "deleted")]
    )
    handler = Switchable(broken=set())
    with capture_logs() as logs:
        await asyncio.wait_for(Worker(settings, {"log": handler}).run(until_idle=1.0), 60)

    assert len(handler.handled) == expected
    assert handler.handled[-1] == ("r-1", "deleted")
    duplicates = [e for e in logs if e.get("outcome") == "duplicate"]
    assert [(e["offset"], e["log_level"]) for e in duplicates] == ([(1, "debug")] if window else [])
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end == {0: 3}


async def test_dlq_show_lists_dead_letters_with_reasons(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """`recording-consumer dlq show` prints each dead letter's origin, handler and error."""
    await create_topic(kafka_bootstrap, unique_name)
    settings = settings_for(kafka_bootstrap, unique_name, unique_name)
    bad = b'{"eventType":"recordingAvailable","recordingId":"r-x","channels":"one"}'
    await produce(settings.kafka, unique_name, [recording_message("r-bad"), (None, bad)])
    handler = Switchable(broken={"r-bad"})
    await asyncio.wait_for(Worker(settings, {"log": handler}).run(until_idle=1.0), 60)

    result = cli(kafka_bootstrap, unique_name, "dlq", "show")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert f"from={unique_name}/0/0" in first
    assert "recordingId=r-bad handler=log error=PermanentFailure" in first
    assert f"from={unique_name}/0/1" in second
    assert "error=DecodeError" in second
    assert "path=$.channels" in second
    assert "2 dead letters" in result.stderr


async def test_replay_filter_matches_one_of_several_failed_handlers(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """A dead letter two handlers gave up on is replayed when --handler names either of them."""
    await create_topic(kafka_bootstrap, unique_name)
    settings = settings_for(kafka_bootstrap, unique_name, unique_name)
    settings = msgspec.structs.replace(settings, routes={"default": ["first", "second"]})
    await produce(settings.kafka, unique_name, [recording_message("r-both")])
    handlers = {"first": Switchable({"r-both"}), "second": Switchable({"r-both"})}
    await asyncio.wait_for(Worker(settings, handlers).run(until_idle=1.0), 60)

    result = cli(kafka_bootstrap, unique_name, "dlq", "replay", "--handler", "second")
    assert result.returncode == 0, result.stderr
    assert "replayed 1 dead letters" in result.stderr
    _, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert end == {0: 2}


async def test_forged_dlq_headers_are_stripped_before_dead_lettering(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """Incoming dlq.* headers never reach the dead letter: no forged handler, path or topic."""
    await create_topic(kafka_bootstrap, unique_name)
    settings = settings_for(kafka_bootstrap, unique_name, unique_name)
    forged = [
        (dl.HANDLER, b"forged-handler"),
        (dl.ERROR_PATH, b"$.forged"),
        (dl.TOPIC, b"__consumer_offsets"),
        ("traceparent", b"t"),
    ]
    key, value = recording_message("r-bad")
    undecodable = b'{"eventType":"recordingAvailable","recordingId":"r-x","channels":"one"}'
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(unique_name, value, key=key, headers=forged)
        await producer.send_and_wait(unique_name, undecodable, headers=forged)
    finally:
        await producer.stop()
    handler = Switchable(broken={"r-bad"})
    await asyncio.wait_for(Worker(settings, {"log": handler}).run(until_idle=1.0), 60)

    failed, undecoded = await read_topic(kafka_bootstrap, f"{unique_name}.dlq")
    for message in (failed, undecoded):
        names = [name for name, _ in message.headers]
        assert names[0] == "traceparent", "other headers are kept"
        ours = [name for name in names if name.startswith(dl.PREFIX)]
        assert len(ours) == len(set(ours)), f"a dlq.* header appears twice: {names}"
        assert dlq_fields(message.headers)[dl.TOPIC] == unique_name
    assert dlq_fields(failed.headers)[dl.HANDLER] == "log"
    assert dl.ERROR_PATH not in dlq_fields(failed.headers)
    assert dl.HANDLER not in dlq_fields(undecoded.headers)
    assert dlq_fields(undecoded.headers)[dl.ERROR_PATH] == "$.channels"


async def test_forged_event_without_media_url_does_not_cancel_the_genuine_one(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """A look-alike with no mediaUrl first: the genuine event still runs; its repeat is counted."""
    await create_topic(kafka_bootstrap, unique_name)
    settings = settings_for(kafka_bootstrap, unique_name, unique_name)
    key, genuine = recording_message("r-1")
    forged = msgspec.json.encode(recording_event("r-1", "c-r-1", "complete") | {"mediaUrl": None})
    await produce(settings.kafka, unique_name, [(key, forged), (key, genuine), (key, genuine)])
    seen: list[str | None] = []

    class Download:
        async def handle(self, event: RecordingEvent, ctx: Context) -> None:
            seen.append(event.media_url)

    worker = Worker(settings, {"log": Download()})
    await asyncio.wait_for(worker.run(until_idle=1.0), 60)

    assert seen[0] is None
    assert seen[1:] == [msgspec.json.decode(genuine)["mediaUrl"]], "genuine event dropped"
    assert (worker.tally.outcomes["handled"], worker.tally.outcomes["duplicate"]) == (2, 1)
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end == {0: 3}
