"""Worker throughput against bare aiokafka loops over the same 6-partition topic.

Run from the repository root:  .venv/bin/python bench/throughput.py [count] [rounds]
(default 200,000 events of ~1 KB, best of 3 rounds). Uses ``$KAFKA_BOOTSTRAP_SERVERS`` or starts
the local broker (``python -m consumer.devkit.devkafka up``). Each round reads the topic afresh
with a new group: a bare loop, then the worker; per-event JSON lines go to /dev/null.

- quiet:  the worker with a no-op handler, per-event lines below the level (warning), against a
  bare ``getmany`` + ``commit`` loop. Goal: at least 80% of the bare loop's events/s.
- logged: the worker with its canonical per-event line on (JSON, info), against a bare loop that
  also decodes with msgspec and writes one structlog JSON line per event. Goal: at least 80%.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog
from _common import (
    Probe,
    Timing,
    bootstrap,
    fresh,
    messages,
    publish_backlog,
    stdout_to_devnull,
    time_bare,
    time_worker,
    verdict,
    worker_settings,
)

from consumer.config import LoggingSettings
from consumer.engine.logs import configure_logging
from consumer.events import EventDecoder, RecordingAvailable

PARTITIONS = 6
GOAL = 0.8


def logging_loop() -> Callable[[Any], None]:
    """Per message: a msgspec decode and one structlog JSON line with the worker's fields."""
    decode = EventDecoder().decode
    log = structlog.get_logger("bench.bare")

    def per_message(record: Any) -> None:
        event = decode(record.value)
        assert isinstance(event, RecordingAvailable)  # the backlog holds recordings only
        log.info(
            "message",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            **event.summary(),
            outcome="handled",
        )

    return per_message


async def compare(
    server: str, topic: str, count: int, rounds: int, level: str, per_message: bool
) -> tuple[Timing, Timing, Timing]:
    best: dict[str, Timing] = {}
    for _ in range(rounds):
        loop = logging_loop() if per_message else None
        runs = {
            "bare": await time_bare(server, topic, count, loop),
            "uncommitted": await time_bare(server, topic, count, loop, commit=False),
            "worker": await time_worker(worker_settings(server, topic, level), Probe(count)),
        }
        for name, run in runs.items():
            if name not in best or run.rate > best[name].rate:
                best[name] = run
    return best["bare"], best["uncommitted"], best["worker"]


def report(label: str, bare: Timing, uncommitted: Timing, worker: Timing, baseline: str) -> None:
    """The goal's ratio is against the loop that commits every batch, as the issue specifies;
    the loop that commits once only at the end is shown for what fetching alone costs."""
    ratio = worker.rate / bare.rate
    print(f"{label}:")
    rows = [
        (f"{baseline} + commit per batch", bare),
        (f"({baseline}, one commit at the end)", uncommitted),
        ("worker", worker),
    ]
    for name, run in rows:
        print(f"  {name:52} {run.rate:>10,.0f} events/s  ({run.seconds:.3f} s)")
    goal = f"goal >= {GOAL:.2f}: {verdict(ratio >= GOAL)}"
    print(f"  worker / bare loop with commits: {ratio:.2f}  ({goal})")
    print(f"  worker / bare loop, commit at end: {worker.rate / uncommitted.rate:.2f}  (no goal)")


async def main(server: str, count: int, rounds: int) -> None:
    topic = fresh("throughput")
    started = time.monotonic()
    data = messages(count)
    size = sum(len(v) for _, v in data) / count
    await publish_backlog(server, topic, PARTITIONS, data)
    del data
    print(
        f"{count:,} events of {size:.0f} bytes on {PARTITIONS} partitions "
        f"(produced in {time.monotonic() - started:.1f} s), best of {rounds} rounds"
    )
    results = []
    for level, per_message in (("warning", False), ("info", True)):
        configure_logging(LoggingSettings(format="json", level=level))  # type: ignore[arg-type]
        with stdout_to_devnull():
            results.append(await compare(server, topic, count, rounds, level, per_message))
    report("quiet (no per-event line)", *results[0], "bare getmany")
    report("logged (JSON line per event)", *results[1], "bare getmany + decode + log")


if __name__ == "__main__":
    asyncio.run(
        main(
            bootstrap(),
            int(sys.argv[1]) if len(sys.argv) > 1 else 200_000,
            int(sys.argv[2]) if len(sys.argv) > 2 else 3,
        )
    )
