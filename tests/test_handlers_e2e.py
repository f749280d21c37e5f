"""End to end: `recording-consumer run` as a process, a real broker, real handlers, real outcomes.

The download handler fetches from a local HTTPS server (tests/tls_server.py) standing in for
Bandwidth; the worker process trusts its throwaway CA through ``SSL_CERT_FILE``, which the
worker's default ``httpx.AsyncClient()`` honours, so no test-only code path is involved.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from consumer.devkit.testing import make_event
from consumer.events import RecordingEvent, encode_event
from consumer.handlers.bandwidth import media_path
from consumer.settings.config import KafkaSettings
from consumer.tools.produce import produce
from tests.support import REPO, committed_and_end, read_topic
from tests.tls_server import CLIENT_ID, CLIENT_SECRET, TOKEN_PATH, FakeBandwidth

AUDIO = b"RIFF" + bytes(range(256)) * 64


@dataclass
class Finished:
    """A worker process that exited: its status and its JSON log lines."""

    returncode: int
    logs: list[dict[str, Any]]
    output: str

    def lines(self, message: str) -> list[dict[str, Any]]:
        return [line for line in self.logs if line.get("event") == message]


def start_worker(topic: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`recording-consumer run --until-idle 1` on `topic` (also its group unless `env` says)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RECORDING_CONSUMER__")}
    full_env |= {
        "RECORDING_CONSUMER__KAFKA__TOPIC": topic,
        "RECORDING_CONSUMER__KAFKA__GROUP_ID": topic,
        "RECORDING_CONSUMER__LOGGING__FORMAT": "json",
        **env,
    }
    command = [sys.executable, "-m", "consumer", "run", "--config", "tests/minimal.toml"]
    # Output goes to a file: nobody reads a pipe while the worker runs.
    with log.open("wb") as out:
        return subprocess.Popen(
            [*command, "--until-idle", "1"],
            env=full_env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def finished(process: subprocess.Popen[bytes], log: Path) -> Finished:
    output = log.read_text()
    logs = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return Finished(process.returncode, logs, output)


@pytest.fixture
def run_worker(kafka_bootstrap: str, tmp_path: Path) -> Callable[..., Awaitable[Finished]]:
    """``await run_worker(topic, **settings)``: run a worker process until idle, 90 s at most.

    `settings` keys are settings (``ROUTES__COMPLETE``) or, in upper case with no ``__``,
    plain environment variables (``SSL_CERT_FILE``).
    """

    runs = itertools.count()

    async def run(topic: str, **settings: str) -> Finished:
        env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
        for key, value in settings.items():
            env[f"RECORDING_CONSUMER__{key}" if "__" in key else key] = value
        log = tmp_path / f"worker-{next(runs)}.log"
        process = start_worker(topic, log, env)
        try:
            # Waited for in a thread: this loop keeps serving the fake Bandwidth meanwhile.
            await asyncio.to_thread(process.wait, 90)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        return finished(process, log)

    return run


async def publish_events(
    bootstrap: str,
    topic: str,
    events: Sequence[RecordingEvent],
    create_topic: Callable[..., Awaitable[None]],
) -> list[bytes]:
    """Put `events` on a new topic, keyed by recording id; returns the values sent."""
    await create_topic(bootstrap, topic)
    messages = [((e.recording_id or "").encode() or None, encode_event(e)) for e in events]
    await produce(KafkaSettings(bootstrap_servers=bootstrap), topic, messages)
    return [value for _, value in messages]


async def all_committed(bootstrap: str, topic: str, group: str | None = None) -> None:
    committed, end = await committed_and_end(bootstrap, topic, group or topic)
    assert committed == end


def served(server: FakeBandwidth, **fields: Any) -> RecordingEvent:
    """An event whose mediaUrl points at `server`, which holds its audio."""
    path = media_path(make_event(**fields))
    server.media[path] = AUDIO
    return make_event(**fields, media_url=server.url(path))


async def test_complete_events_are_downloaded_to_disk(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    run_worker: Callable[..., Awaitable[Finished]],
    bandwidth: FakeBandwidth,
    ca: trustme.CA,
    tmp_path: Path,
) -> None:
    """`complete` recordings land on disk with their sidecars; `partial` is only logged."""
    complete = [served(bandwidth, recording_id=f"r-{n}") for n in range(3)]
    partial = served(bandwidth, recording_id="r-partial", status="partial")
    await publish_events(kafka_bootstrap, unique_name, [*complete, partial], create_topic)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    directory = tmp_path / "recordings"

    worker = await run_worker(
        unique_name,
        ROUTES__COMPLETE='["download"]',
        ROUTES__DEFAULT='["log"]',
        HANDLERS__DOWNLOAD__DIRECTORY=str(directory),
        HANDLERS__DOWNLOAD__TOKEN_URL=bandwidth.url(TOKEN_PATH),
        HANDLERS__DOWNLOAD__ALLOWED_HOSTS=json.dumps([bandwidth.host]),
        HANDLERS__DOWNLOAD__API_URL=bandwidth.url("/api/v2"),
        BANDWIDTH_CLIENT_ID=CLIENT_ID,
        BANDWIDTH_CLIENT_SECRET=CLIENT_SECRET,
        SSL_CERT_FILE=str(ca_file),
    )

    assert worker.returncode == 0, worker.output
    account = directory / "9900000"
    assert sorted(p.name for p in account.iterdir()) == [
        name for n in range(3) for name in (f"r-{n}.wav", f"r-{n}.wav.json")
    ]
    for n in range(3):
        assert (account / f"r-{n}.wav").read_bytes() == AUDIO
        sidecar = json.loads((account / f"r-{n}.wav.json").read_text())
        assert sidecar["event"]["recordingId"] == f"r-{n}"
        assert sidecar["download"]["bytes"] == len(AUDIO)
    assert len(bandwidth.token_requests) == 1
    assert sorted(r.path for r in bandwidth.media_requests) == sorted(
        media_path(e) for e in complete
    )
    assert {r.headers["authorization"] for r in bandwidth.media_requests} == {"Bearer token-1"}
    downloaded = worker.lines("recording downloaded")
    assert sorted(line["recordingId"] for line in downloaded) == ["r-0", "r-1", "r-2"]
    (logged,) = worker.lines("recording event")
    assert (logged["recordingId"], logged["status"]) == ("r-partial", "partial")
    for secret in (CLIENT_ID, CLIENT_SECRET, "token-1"):
        assert secret not in worker.output
    await all_committed(kafka_bootstrap, unique_name)


async def test_error_events_are_logged(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    run_worker: Callable[..., Awaitable[Finished]],
) -> None:
    """`error` events reach the log handler: one info line each, with where they came from."""
    events = [
        make_event(recording_id="r-err-1", status="error", media_url=None),
        make_event(recording_id="r-ok", status="complete"),
        make_event(recording_id="r-err-2", status="error", media_url=None),
    ]
    await publish_events(kafka_bootstrap, unique_name, events, create_topic)

    worker = await run_worker(unique_name, ROUTES__ERROR='["log"]', ROUTES__DEFAULT="[]")

    assert worker.returncode == 0, worker.output
    # Different recordings run concurrently: their lines may come in any order.
    logged = sorted(worker.lines("recording event"), key=lambda line: line["offset"])
    assert [(line["recordingId"], line["status"]) for line in logged] == [
        ("r-err-1", "error"),
        ("r-err-2", "error"),
    ]
    for line, offset in zip(logged, (0, 2), strict=True):
        assert line["level"] == "info"
        assert (line["handler"], line["topic"], line["offset"]) == ("log", unique_name, offset)
        assert line["eventType"] == "recordingAvailable"
    outcomes = {line["recordingId"]: line["outcome"] for line in worker.lines("message")}
    assert outcomes == {"r-err-1": "handled", "r-ok": "unrouted", "r-err-2": "handled"}
    await all_committed(kafka_bootstrap, unique_name)


async def test_publish_writes_each_status_to_its_own_topic(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    run_worker: Callable[..., Awaitable[Finished]],
) -> None:
    """The publish handler sends every event to ``<topic>.<status>``: original bytes and key."""
    events = [
        make_event(recording_id="r-1", status="partial"),
        make_event(recording_id="r-1", status="complete"),
        make_event(recording_id="r-2", status="complete"),
        make_event(recording_id="r-3", status="error", media_url=None),
    ]
    values = await publish_events(kafka_bootstrap, unique_name, events, create_topic)
    keys = [b"r-1", b"r-1", b"r-2", b"r-3"]

    worker = await run_worker(
        unique_name,
        ROUTES__DEFAULT='["publish"]',
        HANDLERS__PUBLISH__TOPIC=f"{unique_name}.{{status}}",
        HANDLERS__PUBLISH__PUBLISHED_BY="e2e-worker",
    )

    assert worker.returncode == 0, worker.output
    for status, expected in [("partial", [0]), ("complete", [1, 2]), ("error", [3])]:
        records = await read_topic(kafka_bootstrap, f"{unique_name}.{status}")
        # One recording's events keep their order; different recordings' may interleave.
        sent = sorted((r.key, r.value) for r in records)
        assert sent == sorted((keys[n], values[n]) for n in expected)
        assert all(("published-by", b"e2e-worker") in r.headers for r in records)
    await all_committed(kafka_bootstrap, unique_name)


async def test_installed_example_plugin_is_discovered_and_routed(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    run_worker: Callable[..., Awaitable[Finished]],
    tmp_path: Path,
) -> None:
    """The example plugin, found by entry point, audits each record once, even when replayed."""
    statuses = ["partial", "complete", "error"]
    events = [make_event(recording_id=f"r-{n}", status=s) for n, s in enumerate(statuses)]
    await publish_events(kafka_bootstrap, unique_name, events, create_topic)
    audit = tmp_path / "audit" / "recordings.jsonl"
    settings = {
        "PLUGINS__ALLOW": '["audit"]',
        "ROUTES__DEFAULT": '["audit"]',
        "HANDLERS__AUDIT__PATH": str(audit),
    }

    first = await run_worker(unique_name, **settings)
    second = await run_worker(unique_name, KAFKA__GROUP_ID=f"{unique_name}.again", **settings)

    assert (first.returncode, second.returncode) == (0, 0), first.output + second.output
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(line["topic"], line["offset"]) for line in lines] == [
        (unique_name, 0),
        (unique_name, 1),
        (unique_name, 2),
    ]
    assert [line["event"]["status"] for line in lines] == statuses
    assert len(first.lines("event audited")) == 3
    assert len(second.lines("already audited")) == 3
    await all_committed(kafka_bootstrap, unique_name)
    await all_committed(kafka_bootstrap, unique_name, f"{unique_name}.again")
