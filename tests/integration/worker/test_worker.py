"""The worker end to end against the real broker: routing, commits, restarts, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from msgspec.json import encode

from consumer.cli.produce import produce
from consumer.cli.samples import SAMPLE_STATUSES, recording_event, sample_messages
from consumer.engine.worker import Worker
from tests._support.kafka_helpers import (
    REPO,
    Recorder,
    committed_and_end,
    exit_status,
    handled_lines,
    settings_for,
    wait_for,
    worker_process,
)


async def test_every_status_is_routed_and_committed(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """Each status reaches the handlers its route names; offsets reach the end; a rerun is empty."""
    await create_topic(kafka_bootstrap, unique_name, partitions=3)
    settings = settings_for(kafka_bootstrap, unique_name, unique_name)
    await produce(settings.kafka, unique_name, sample_messages(repeat=3))
    routes = {"complete": ["downloads", "audit"], "error": ["alerts"], "default": ["audit"]}
    settings = msgspec.structs.replace(settings, routes=routes)
    handlers = {"downloads": Recorder(), "audit": Recorder(), "alerts": Recorder()}

    worker = Worker(settings, handlers)
    await asyncio.wait_for(worker.run(until_idle=1.0), timeout=60)

    def statuses(name: str) -> list[str]:
        return sorted(event.status or "" for event, _ in handlers[name].seen)

    others = [s for s in SAMPLE_STATUSES if s not in ("complete", "error")]
    assert statuses("downloads") == ["complete"] * 3
    assert statuses("alerts") == ["error"] * 3
    assert statuses("audit") == sorted(["complete"] * 3 + others * 3)
    assert worker.tally.outcomes["undecodable"] == 1
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end
    assert sum(end.values()) == len(SAMPLE_STATUSES) * 3 + 1

    # One new event: the rerun must handle it, and only it.
    await produce(
        settings.kafka,
        unique_name,
        [(b"r-new", encode(recording_event("r-new", "c-new", "error")))],
    )
    again = {name: Recorder() for name in handlers}
    rerun = Worker(settings, again)
    await asyncio.wait_for(rerun.run(until_idle=1.0), timeout=60)
    assert again["alerts"].recording_ids() == ["r-new"]
    assert not again["downloads"].seen
    assert not again["audit"].seen


async def test_sigterm_mid_stream_loses_nothing(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """SIGTERM with a handler in flight exits 0; a restart handles just what was not committed."""
    await create_topic(kafka_bootstrap, unique_name, partitions=1)
    settings = settings_for(kafka_bootstrap, unique_name, unique_name)
    messages = [m for m in sample_messages(repeat=5) if m[0] is not None]  # 30 decodable events
    await produce(settings.kafka, unique_name, messages)
    first_run, second_run = tmp_path / "first", tmp_path / "second"

    sequential: dict[str, Any] = {"ENGINE__ORDERING": '"partition"', "TEST_HANDLER_DELAY": "0.2"}
    worker = worker_process(kafka_bootstrap, unique_name, first_run, **sequential)
    await wait_for(
        lambda: len(handled_lines(first_run)) >= 3, seconds=60, what="three handled events"
    )
    worker.send_signal(signal.SIGTERM)
    assert await exit_status(worker) == 0, first_run.with_name("first.log").read_text()

    handled_first = handled_lines(first_run)
    assert len(handled_first) < len(messages), "stopped too late to prove anything"
    committed, _ = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed[0] == len(handled_first), "the in-flight message finished and was committed"

    restart = worker_process(kafka_bootstrap, unique_name, second_run, until_idle=1)
    assert await exit_status(restart, 90) == 0, second_run.with_name("second.log").read_text()
    offsets = sorted(o for _, o in handled_first + handled_lines(second_run))
    assert offsets == list(range(len(messages)))
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end


def test_unknown_handler_in_routes_fails_start_up() -> None:
    """A route naming a handler that does not exist exits 2 listing the available names."""
    env = {
        **os.environ,
        "RECORDING_CONSUMER__ROUTES__COMPLETE": '["nope"]',
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "consumer", "run"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    # Installed plugins (make install adds the example package's `audit`) are listed too.
    assert "unknown handler 'nope'; available handlers: " in result.stderr
    assert "download, log, publish" in result.stderr
