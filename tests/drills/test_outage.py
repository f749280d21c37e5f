"""The broker away: at start-up (one clear line, exit 1) and while the worker runs (readiness,
outage lines, JSON throughout, nothing lost). Worker processes are real `recording-consumer`s."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumer.cli.produce import produce
from consumer.devkit.broker import LocalBroker, free_port
from consumer.observability.logs import REPEAT_INTERVAL
from consumer.settings.config import KafkaSettings
from tests._support.kafka_helpers import (
    REPO,
    committed_and_end,
    exit_status,
    handled_lines,
    recording_message,
    wait_for,
    worker_process,
)

STARTUP_TIMEOUT = 3.0


@pytest.mark.parametrize(
    "command", [["run"], ["produce"], ["dlq", "show"], ["dlq", "replay"]], ids=" ".join
)
def test_no_broker_at_start_exits_1_with_one_line(command: list[str]) -> None:
    """With nothing listening, each command retries for kafka.startup_timeout, then exits 1
    with one `cannot reach Kafka at host:port` line: no traceback, no unclosed clients."""
    bootstrap = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RECORDING_CONSUMER__KAFKA__STARTUP_TIMEOUT": str(STARTUP_TIMEOUT),
        "RECORDING_CONSUMER__LOGGING__FORMAT": "json",
        "PYTHONWARNINGS": "always",  # an unclosed client's ResourceWarning must show if any
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "consumer", *command],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert STARTUP_TIMEOUT <= elapsed < STARTUP_TIMEOUT + 30, elapsed
    assert "Traceback" not in output
    assert "Unclosed" not in output
    verdicts = [
        line for line in output.splitlines() if f"cannot reach Kafka at {bootstrap}:" in line
    ]
    assert len(verdicts) == 1, output
    assert result.stderr.splitlines()[-1] == verdicts[0]
    assert verdicts[0].startswith(f"recording-consumer: cannot reach Kafka at {bootstrap}: ")
    assert "Connect call failed" in verdicts[0]
    if command == ["run"]:
        assert result.stderr.splitlines() == verdicts
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert [line["event"] for line in lines] == ["waiting for Kafka"] * len(lines)
        assert 1 <= len(lines) <= STARTUP_TIMEOUT // 5 + 1  # at most one per few seconds


async def test_probes_while_waiting_for_kafka(tmp_path: Path) -> None:
    """While start-up waits for an absent broker the worker is live (no restart loop) but not
    ready: /healthz 200, /readyz 503, past loop_block_timeout; SIGTERM ends the wait."""
    port = free_port()
    worker = worker_process(
        f"127.0.0.1:{free_port()}",
        "never-created",
        tmp_path / "handled",
        OBSERVABILITY__LISTEN=f"127.0.0.1:{port}",
        OBSERVABILITY__LOOP_BLOCK_TIMEOUT="0.5",
        KAFKA__STARTUP_TIMEOUT="60",
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await wait_for_ready(client, 503)
            log = tmp_path / "handled.log"
            await wait_for(lambda: "waiting for Kafka" in events_in(log), 30, "a retry line")
            started = time.monotonic()
            while time.monotonic() - started < 1.0:  # past loop_block_timeout
                assert (await client.get("/healthz")).status_code == 200
                assert (await client.get("/readyz")).status_code == 503
                await asyncio.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert await exit_status(worker, 30) == 0  # SIGTERM ends the wait at once


async def test_broker_outage_while_running(
    private_broker: LocalBroker,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """Broker killed and restarted under a running worker: /readyz goes 503 then 200, the log
    says `broker unreachable` and `broker reachable again`, every line is JSON, identical
    problems are written once per interval, stats lines come, and every event is handled and
    committed."""
    bootstrap = private_broker.bootstrap  # started by the fixture
    await create_topic(bootstrap, unique_name, partitions=2)
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    await produce(kafka, unique_name, [recording_message(f"r-a-{n:03d}") for n in range(50)])
    port = free_port()
    handled = tmp_path / "handled"
    log = tmp_path / "handled.log"
    worker = worker_process(
        bootstrap,
        unique_name,
        handled,
        OBSERVABILITY__LISTEN=f"127.0.0.1:{port}",
        KAFKA__SESSION_TIMEOUT_MS="6000",
        KAFKA__HEARTBEAT_INTERVAL_MS="500",
        OBSERVABILITY__STATS_INTERVAL="3",
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await wait_for_ready(client, 200)
            await wait_for(lambda: len(handled_lines(handled)) >= 50, 60, "the first 50 events")

            await asyncio.to_thread(private_broker.kill)
            await wait_for_ready(client, 503)
            await wait_for(lambda: "broker unreachable" in events_in(log), 30, "the outage line")

            await asyncio.to_thread(private_broker.restart)
            more = [recording_message(f"r-b-{n:03d}") for n in range(50)]
            await produce(kafka, unique_name, more)
            await wait_for_ready(client, 200, seconds=90)
            await wait_for(lambda: "broker reachable again" in events_in(log), 30, "recovery")

        await wait_for(lambda: len(set(handled_lines(handled))) >= 100, 90, "all 100 events")
        committed, end = await committed_and_end(bootstrap, unique_name, unique_name)
        deadline = time.monotonic() + 30
        while committed != end and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            committed, end = await committed_and_end(bootstrap, unique_name, unique_name)
        assert committed == end
        assert sum(end.values()) == 100
    finally:
        worker.send_signal(signal.SIGTERM)
        assert await exit_status(worker) == 0

    lines = [json.loads(line) for line in log.read_text().splitlines()]  # all JSON, or it fails
    assert all("timestamp" in line and "level" in line for line in lines)
    (down,) = [line for line in lines if line["event"] == "broker unreachable"]
    (back,) = [line for line in lines if line["event"] == "broker reachable again"]
    assert down["bootstrap"] == bootstrap
    assert back["outage_seconds"] > 0
    assert any(line.get("logger", "").startswith("aiokafka") for line in lines)
    assert_repeats_collapsed(lines)
    stats = [line for line in lines if line["event"] == "stats"]
    assert stats, "no stats line"
    assert sum(line["outcomes"].get("handled", 0) for line in stats) <= 100
    assert {"messages_per_second", "lag", "in_flight", "buffered"} <= set(stats[-1])


def events_in(log: Path) -> set[str]:
    if not log.exists():
        return set()
    return {json.loads(line)["event"] for line in log.read_text().splitlines() if line}


async def wait_for_ready(client: httpx.AsyncClient, status: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if (await client.get("/readyz")).status_code == status:
                return
        except httpx.TransportError:
            pass  # not listening yet
        assert time.monotonic() < deadline, f"/readyz never answered {status}"
        await asyncio.sleep(0.1)


def assert_repeats_collapsed(lines: list[dict[str, Any]]) -> None:
    """No identical warning or error is written twice within one repeat interval."""
    last: dict[str, float] = {}
    for line in lines:
        if line["level"] not in ("warning", "error"):
            continue
        key = json.dumps({k: v for k, v in line.items() if k not in ("timestamp", "repeated")})
        when = _seconds(line["timestamp"])
        if key in last:
            assert when - last[key] >= REPEAT_INTERVAL - 0.5, f"repeated too soon: {key}"
        last[key] = when


def _seconds(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp).timestamp()
