"""A worker observed from outside: its settings with the endpoint on, its routes,
scraping /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from consumer.devkit.broker import free_port
from consumer.engine.worker import Worker
from consumer.events import RecordingEvent
from consumer.handler_api import Context, Handler
from consumer.observability.observers import Observers
from consumer.observability.server import endpoint
from consumer.settings.config import Settings
from tests._support.kafka_helpers import settings_for


def observed_settings(bootstrap: str, topic: str, **overrides: str) -> Settings:
    """The test's topic and group, the endpoint on a free loopback port, short retries."""
    return settings_for(
        bootstrap,
        topic,
        topic,
        OBSERVABILITY__LISTEN=f"127.0.0.1:{free_port()}",
        RETRY__MAX_ATTEMPTS="2",
        RETRY__INITIAL_DELAY="0.01",
        **overrides,
    )


def routed(settings: Settings, routes: dict[str, list[str]]) -> Settings:
    return msgspec.structs.replace(settings, routes=routes)


def observed(settings: Settings, handlers: Mapping[str, Handler]) -> tuple[Worker, Observers]:
    """A worker and its observers, wired as the command line wires them."""
    observers = Observers(settings)
    return Worker(settings, handlers, observers), observers


@asynccontextmanager
async def serving(
    worker: Worker, observers: Observers
) -> AsyncIterator[tuple[httpx.AsyncClient, asyncio.Task[None]]]:
    """The worker running with its endpoint, and a client for it; stopped on the way out."""
    base = f"http://{worker.settings.observability.listen}"
    async with endpoint(worker, observers), httpx.AsyncClient(base_url=base, timeout=30) as client:
        run = asyncio.create_task(worker.run())
        try:
            yield client, run
        finally:
            worker.stop()
            await asyncio.wait_for(run, 60)


async def scrape(client: httpx.AsyncClient) -> Samples:
    """/metrics parsed by prometheus-client's own parser: (sample name, labels) -> value."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (sample, labels), value in samples.items() if sample == name}


class Broken:
    """Fails every attempt: its messages are retried once, then dead-lettered."""

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        raise RuntimeError("downstream refused")


class Gate:
    """Holds the first event until `release` is set; the rest pass."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        if not self.entered.is_set():
            self.entered.set()
            await self.release.wait()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
