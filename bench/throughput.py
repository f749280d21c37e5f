"""The worker's throughput beside bare aiokafka loops and FastStream, on one topic in one run.

Run from the repository root (with the bench extra: ``pip install -e '.[dev,bench]'``):

    .venv/bin/python bench/throughput.py [count] [rounds] [--chart docs/throughput.png]

(default 100,000 events of ~1 KB on 6 partitions, 3 rounds, medians). Uses
``$KAFKA_BOOTSTRAP_SERVERS`` or starts the local broker (``python -m consumer.devkit.broker
up``). The backlog is written once; each round then runs every loop in turn, interleaved so a
noisy moment on the machine hurts all of them alike, each with a consumer group of its own:

1. bare aiokafka: ``getmany(max_records=2000)`` and a ``commit()`` after every batch;
2. the same, one commit at the end (what fetching alone costs);
3. the issue's minimal batch loop, a floor for any engine: loop 1 plus, per event, a msgspec
   decode, the lane key and a no-op handler's coroutine run to completion without a task;
4. bare, plus a msgspec decode and one structlog JSON line per event (the worker's logging
   set-up, to /dev/null);
5. the worker (``python -m consumer run``, its defaults) with a no-op handler plugin from
   ``[plugins.paths]``, quiet: level warning, no per-event line;
6. the same worker, level info: its canonical JSON line per event, to /dev/null;
7. FastStream's Kafka subscriber with a pydantic body, no logger, and 8. with its own logging
   (bench/faststream_app.py: aiokafka auto-commits every second, the worker's commit interval).

A bare loop is timed from its first fetched batch to its last commit; the worker and FastStream,
in their own processes, from their first handled event until this process sees (polling every
20 ms) the group's committed offsets at the end of every partition.

Goals (issue 13): quiet >= 0.5x loop 1, logged >= 0.8x loop 4, worker >= 5x FastStream in both
modes. The table is printed in Markdown and drawn as a PNG chart.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from _common import (
    bootstrap,
    fresh,
    kafka_settings,
    messages,
    publish_backlog,
    stdout_to_devnull,
    verdict,
)
from _throughput_chart import Row, draw
from _throughput_runs import (
    Backlog,
    Run,
    bare,
    decode_and_drive,
    decode_and_log,
    faststream,
    machine,
    worker,
)

from consumer.kafka.topics import end_offsets
from consumer.observability.logs import configure_logging
from consumer.settings.config import LoggingSettings

PARTITIONS = 6
QUIET_GOAL = 0.5
LOGGED_GOAL = 0.8
FASTSTREAM_GOAL = 5.0

BARE = "bare aiokafka: getmany(2000) + commit per batch"
BARE_AT_END = "bare aiokafka: getmany(2000), one commit at the end"
MINIMAL = "minimal batch loop: bare + decode, lane key, no-op coroutine, no task"
BARE_LOGGED = "bare + msgspec decode + one structlog JSON line per event"
QUIET = "worker, quiet (no per-event line)"
LOGGED = "worker, one canonical JSON line per event"
FASTSTREAM_QUIET = "FastStream subscriber (pydantic body), no logger"
FASTSTREAM_LOGGED = "FastStream subscriber (pydantic body), its logging"


async def _bare_logged(backlog: Backlog) -> Run:
    per_record = decode_and_log()
    with stdout_to_devnull():
        return await bare(backlog, per_record)


LOOPS: dict[str, Callable[[Backlog], Awaitable[Run]]] = {
    BARE: bare,
    BARE_AT_END: lambda backlog: bare(backlog, commit_per_batch=False),
    MINIMAL: lambda backlog: bare(backlog, decode_and_drive()),
    BARE_LOGGED: _bare_logged,
    QUIET: lambda backlog: worker(backlog, "warning"),
    LOGGED: lambda backlog: worker(backlog, "info"),
    FASTSTREAM_QUIET: lambda backlog: faststream(backlog, "none"),
    FASTSTREAM_LOGGED: lambda backlog: faststream(backlog, "default"),
}


def against(ratio: float, goal: float) -> str:
    return f"goal >= {goal:g}: {verdict(ratio >= goal)}"


def rows(rate: dict[str, float]) -> list[Row]:
    """The table: each loop's median events/s and its ratio, against the goal it has."""
    quiet = rate[QUIET] / rate[BARE]
    logged = rate[LOGGED] / rate[BARE_LOGGED]
    over_quiet = rate[QUIET] / rate[FASTSTREAM_QUIET]
    over_logged = rate[LOGGED] / rate[FASTSTREAM_LOGGED]
    return [
        Row(BARE, rate[BARE], "1"),
        Row(BARE_AT_END, rate[BARE_AT_END], f"{rate[BARE_AT_END] / rate[BARE]:.2f} (no goal)"),
        Row(
            MINIMAL, rate[MINIMAL], f"{rate[MINIMAL] / rate[BARE]:.2f} of loop 1 (no goal: a floor)"
        ),
        Row(BARE_LOGGED, rate[BARE_LOGGED], "1"),
        Row(QUIET, rate[QUIET], f"{quiet:.2f} of loop 1 ({against(quiet, QUIET_GOAL)})"),
        Row(LOGGED, rate[LOGGED], f"{logged:.2f} of loop 4 ({against(logged, LOGGED_GOAL)})"),
        Row(
            FASTSTREAM_QUIET,
            rate[FASTSTREAM_QUIET],
            f"worker quiet is {over_quiet:.1f}x ({against(over_quiet, FASTSTREAM_GOAL)})",
        ),
        Row(
            FASTSTREAM_LOGGED,
            rate[FASTSTREAM_LOGGED],
            f"worker logged is {over_logged:.1f}x ({against(over_logged, FASTSTREAM_GOAL)})",
        ),
    ]


async def main(server: str, count: int, rounds: int, chart: Path) -> None:
    measured = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = machine()
    print(f"{measured}: {where}")
    topic = fresh("throughput")
    started = time.monotonic()
    data = messages(count)
    size = sum(len(value) for _, value in data) / count
    await publish_backlog(server, topic, PARTITIONS, data)
    del data
    ends = await end_offsets(kafka_settings(server), topic)
    backlog = Backlog(server, topic, count, {tp.partition: end for tp, end in ends.items()})
    print(
        f"{count:,} events of {size:.0f} bytes on {PARTITIONS} partitions (produced in "
        f"{time.monotonic() - started:.1f} s); medians of {rounds} interleaved rounds"
    )
    configure_logging(LoggingSettings(format="json", level="info"))
    rates: dict[str, list[float]] = {name: [] for name in LOOPS}
    for n in range(1, rounds + 1):
        for name, run in LOOPS.items():
            timed = await run(backlog)
            rates[name].append(count / timed.seconds)
            # For a process: how much of its time was waiting for the last commit.
            handled = "" if timed.handled is None else f", last handled at {timed.handled:.2f} s"
            print(
                f"  round {n}/{rounds}: {name}: {count / timed.seconds:,.0f} events/s "
                f"(committed at {timed.seconds:.2f} s{handled})",
                file=sys.stderr,
            )
    table = rows({name: statistics.median(found) for name, found in rates.items()})
    print("\n| loop | events/s | ratio |\n|---|---|---|")
    for row in table:
        print(f"| {row.loop} | {row.rate / 1000:.1f}k | {row.ratio} |")
    draw(table, chart, f"{measured}, {count:,} events, medians of {rounds}", where)
    print(f"\nchart: {chart}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The worker's throughput beside bare loops.")
    parser.add_argument("count", nargs="?", type=int, default=100_000, help="events")
    parser.add_argument("rounds", nargs="?", type=int, default=3, help="rounds (medians)")
    parser.add_argument("--chart", type=Path, default=Path("docs/throughput.png"), help="PNG")
    args = parser.parse_args()
    if importlib.util.find_spec("faststream") is None:
        sys.exit("bench/throughput.py compares with FastStream: pip install -e '.[bench]'")
    # Outside the loop: starting the local broker runs a loop of its own.
    asyncio.run(main(bootstrap(), args.count, args.rounds, args.chart))
