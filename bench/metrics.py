"""What the metrics endpoint costs: worker throughput with it off and on, in the same run.

Run from the repository root:  .venv/bin/python bench/metrics.py [count] [rounds]
(default 100,000 events of ~1 KB on 6 partitions, best of 3 rounds each, the two alternating).
Uses ``$KAFKA_BOOTSTRAP_SERVERS`` or starts the local broker. Per-event lines are off (level
warning), so the engine's own cost is what the metrics are compared against.

- off: ``observability.listen = ""``: no endpoint. The counters behind the metrics are the
  worker's tally, kept either way (its end-of-run summary reads them); their cost per message
  is measured on its own below.
- on: the endpoint served from the worker's loop and scraped every `SCRAPE_EVERY` seconds, far
  more often than Prometheus would (15 to 60 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
import timeit

import httpx
import msgspec
from _common import (
    Probe,
    Timing,
    bootstrap,
    fresh,
    messages,
    publish_backlog,
    stdout_to_devnull,
    time_worker,
    worker_settings,
)

from consumer.devkit.broker import free_port
from consumer.engine.tally import Tally
from consumer.observability.logs import configure_logging
from consumer.observability.metrics import Durations
from consumer.settings.config import LoggingSettings, ObservabilitySettings

PARTITIONS = 6
SCRAPE_EVERY = 1.0


async def scrape_forever(client: httpx.AsyncClient, url: str, scrapes: list[float]) -> None:
    """GET /metrics every SCRAPE_EVERY seconds; notes how long each scrape took."""
    while True:
        with contextlib.suppress(httpx.TransportError):
            started = time.perf_counter()
            (await client.get(url)).raise_for_status()
            scrapes.append(time.perf_counter() - started)
        await asyncio.sleep(SCRAPE_EVERY)


async def timed(
    server: str, topic: str, count: int, on: bool, client: httpx.AsyncClient, scrapes: list[float]
) -> Timing:
    listen = f"127.0.0.1:{free_port()}" if on else ""
    settings = worker_settings(server, topic, "warning")
    settings = msgspec.structs.replace(settings, observability=ObservabilitySettings(listen=listen))
    url = f"http://{listen}/metrics"
    scraper = asyncio.create_task(scrape_forever(client, url, scrapes)) if on else None
    try:
        return await time_worker(settings, Probe(count), serve=on)
    finally:
        if scraper is not None:
            scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scraper


def counting_cost() -> float:
    """Nanoseconds per message of what the hot path adds for the metrics: one outcome count
    (with its label folding) and one handler-duration observation."""
    tally = Tally(durations=Durations())
    n = 200_000

    def per_message() -> None:
        tally.finished("handled", "complete", "recordingAvailable")
        tally.durations.observe("probe", "ok", 0.0003)

    return min(timeit.repeat(per_message, number=n, repeat=5)) / n * 1e9


async def main(server: str, count: int, rounds: int) -> None:
    topic = fresh("metrics")
    data = messages(count)
    await publish_backlog(server, topic, PARTITIONS, data)
    del data
    print(f"{count:,} events on {PARTITIONS} partitions, best of {rounds} rounds each")
    configure_logging(LoggingSettings(format="json", level="warning"))
    rates: dict[bool, list[float]] = {False: [], True: []}
    scrapes: list[float] = []
    # One client made up front: building its TLS defaults inside a timed run would be counted.
    async with httpx.AsyncClient(timeout=30) as client:
        with stdout_to_devnull():
            for n in range(rounds):
                for on in (n % 2 == 0, n % 2 == 1):  # alternate which goes first
                    run = await timed(server, topic, count, on, client, scrapes)
                    rates[on].append(run.rate)
    for on, label in (
        (False, "off (no endpoint)"),
        (True, f"on (scraped every {SCRAPE_EVERY:.0f} s)"),
    ):
        runs = rates[on]
        print(
            f"  metrics {label:26} best {max(runs):>8,.0f}  median {statistics.median(runs):>8,.0f}"
            f" events/s  (all: {', '.join(f'{r:,.0f}' for r in runs)})"
        )
    best = max(rates[True]) / max(rates[False])
    median = statistics.median(rates[True]) / statistics.median(rates[False])
    pairs = statistics.median(on / off for on, off in zip(rates[True], rates[False], strict=True))
    print(f"  on / off: best {best:.3f}, median {median:.3f}, median of round pairs {pairs:.3f}")
    if scrapes:
        print(f"  {len(scrapes)} scrapes, slowest {max(scrapes) * 1000:.1f} ms")
    print(f"  counting per message (outcome + duration): {counting_cost():.0f} ns")


if __name__ == "__main__":
    asyncio.run(
        main(
            bootstrap(),
            int(sys.argv[1]) if len(sys.argv) > 1 else 100_000,
            int(sys.argv[2]) if len(sys.argv) > 2 else 3,
        )
    )
