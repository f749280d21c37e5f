"""The ingress as a child process, for tests that post to it, kill it or stop it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec

from consumer.cli.samples import recording_event
from consumer.devkit.broker import free_port
from tests._support.kafka_helpers import REPO

AUTH = ("bandwidth-callbacks", "correct horse battery staple")


@dataclass
class Ingress:
    process: subprocess.Popen[bytes]
    url: str
    """The callback URL (POST)."""
    probes: str
    """Base URL of /metrics, /healthz, /readyz."""
    log: Path
    spool: Path

    def events(self) -> list[dict[str, Any]]:
        """The JSON lines it logged so far."""
        if not self.log.exists():
            return []
        return [msgspec.json.decode(line) for line in self.log.read_bytes().splitlines() if line]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


def start_ingress(
    bootstrap: str,
    topic: str,
    directory: Path,
    *,
    preexec_fn: Callable[[], None] | None = None,
    **settings: str,
) -> Ingress:
    """`recording-consumer ingest` on free loopback ports, spool in `directory`/spool; `settings`
    as ``INGRESS__ACK_TIMEOUT="1"``. Credentials are `AUTH` unless settings say otherwise."""
    port, probes = free_port(), free_port()
    spool = directory / "spool"
    log = directory / f"ingress-{uuid.uuid4().hex[:6]}.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RECORDING_CONSUMER__KAFKA__TOPIC": topic,
        "RECORDING_CONSUMER__LOGGING__FORMAT": "json",
        "RECORDING_CONSUMER__INGRESS__LISTEN": f"127.0.0.1:{port}",
        "RECORDING_CONSUMER__OBSERVABILITY__LISTEN": f"127.0.0.1:{probes}",
        "RECORDING_CONSUMER__INGRESS__SPOOL_DIR": str(spool),
        "RECORDING_CONSUMER__INGRESS__USERNAME": AUTH[0],
        "RECORDING_CONSUMER__INGRESS__PASSWORD": AUTH[1],
        **{f"RECORDING_CONSUMER__{k}": v for k, v in settings.items()},
    }
    config = REPO / "tests" / "_support" / "minimal.toml"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "consumer", "ingest", "--config", str(config)],
            env=env,
            cwd=directory,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
    return Ingress(
        process, f"http://127.0.0.1:{port}/callbacks", f"http://127.0.0.1:{probes}", log, spool
    )


async def wait_serving(ingress: Ingress, seconds: float = 60.0, *, kafka: bool = True) -> None:
    """Return once the callback port answers (any status) and, with `kafka`, the ingress's
    producer is connected; fail if the process exits first."""
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if ingress.process.poll() is not None:
                raise AssertionError(
                    f"ingress exited with {ingress.process.returncode}:\n{ingress.log.read_text()}"
                )
            try:
                await client.get(ingress.url.rsplit("/", 1)[0] + "/")
                samples = await scrape(client, ingress.probes)
                if not kafka or samples["recording_consumer_ingress_kafka_up"] == 1:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"ingress not serving after {seconds} s")
            await asyncio.sleep(0.1)


async def stop(ingress: Ingress, seconds: float = 60.0) -> int:
    """SIGTERM, then its exit status."""
    ingress.process.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(ingress.process.wait, seconds)


def callback(recording_id: str, status: str = "complete", **extra: Any) -> bytes:
    """A recordingAvailable callback as Bandwidth posts it."""
    event = recording_event(recording_id, f"c-{recording_id}", status) | extra
    return msgspec.json.encode(event)


async def scrape(client: httpx.AsyncClient, probes: str) -> dict[str, float]:
    """The ingress's samples, by name with labels as Prometheus prints them."""
    text = (await client.get(probes + "/metrics")).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples
