"""A real worker process running the built-in handlers against the local stand-ins."""

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

from consumer.cli.produce import produce
from consumer.events import RecordingEvent, encode_event
from consumer.settings.config import KafkaSettings
from tests._support.kafka_helpers import REPO, committed_and_end


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
    command = [sys.executable, "-m", "consumer", "run", "--config", "tests/_support/minimal.toml"]
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
