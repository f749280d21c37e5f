"""The ingress spool on this machine's disk: append latency (every append fsync'd) and the rate
at which a backlog is read back and removed, as the forwarder does when Kafka returns.

Appends are measured as shipped (writes and fsyncs in asyncio.to_thread) and with the same calls
made inline in the event loop, with one caller and with `callers` concurrent ones, and against
the floor: a bare pwrite + fdatasync loop. The runs take turns over `rounds` rounds so that the
other load on the machine falls on every mode alike. A ticker task (1 ms sleeps) shows how long
the event loop was held up while appending.

Run from the repository root:  .venv/bin/python bench/spool.py [appends] [callers] [directory]
(the spools go in a temporary directory under `directory`, default the current one).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consumer.ingress import spool as spool_module
from consumer.ingress.spool import Spool, SpooledCallback

ROUNDS = 5
BODY = b'{"eventType":"recordingAvailable","recordingId":"r-%08d","tag":"' + b"x" * 960 + b'"}'
HEADERS = (("ingress.received_at", b"2026-12-03T13:00:00.000Z"), ("ingress.request_id", b"0" * 32))


def callback(n: int) -> SpooledCallback:
    """A 1 KB callback, as the ingress spools it."""
    return SpooledCallback(BODY.replace(b"%08d", b"%08d" % n), b"r-%08d" % n, HEADERS)


async def inline(function: Callable[..., Any], /, *args: Any) -> Any:
    """asyncio.to_thread's stand-in for the inline mode: the call made in the event loop."""
    return function(*args)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Run:
    """What one mode measured over all rounds."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.stalls: list[float] = []
        self.count = 0
        self.elapsed = 0.0


async def appends(spool: Spool, first: int, count: int, callers: int, run: Run) -> None:
    """`count` appends spread over `callers` tasks, measured into `run`."""
    running = True

    async def ticker() -> None:
        while running:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            run.stalls.append(time.perf_counter() - before - 0.001)

    async def caller(offset: int) -> None:
        for n in range(first + offset, first + count, callers):
            started = time.perf_counter()
            await spool.append(callback(n))
            run.latencies.append(time.perf_counter() - started)

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for n in range(callers):
            group.create_task(caller(n))
    run.elapsed += time.perf_counter() - started
    run.count += count
    running = False
    await tick


def raw_fsync(directory: Path, count: int, run: Run) -> None:
    """The floor: 1 KB pwrite + fdatasync to one file, nothing else, in the same directory."""
    fd = os.open(directory / "raw", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    data = bytes(len(BODY) + 100)
    started = time.perf_counter()
    for _ in range(count):
        before = time.perf_counter()
        os.write(fd, data)
        os.fdatasync(fd)
        run.latencies.append(time.perf_counter() - before)
    run.elapsed += time.perf_counter() - started
    run.count += count
    os.close(fd)


async def forwarding(directory: Path, batch: int) -> str:
    """Open the spool left in `directory`, read it back and remove it `batch` entries at a time."""
    started = time.perf_counter()
    spool = Spool.open(directory, 2**40)
    opened = time.perf_counter() - started
    count = len(spool)
    started = time.perf_counter()
    while len(spool):
        await spool.remove(len(spool.oldest(batch)))
    elapsed = time.perf_counter() - started
    spool.close()
    return (
        f"forwarding {count} entries, oldest+remove in batches of {batch:>3}: "
        f"{count / elapsed:>7.0f} entries/s  (open: scan and checksums {opened * 1e3:.0f} ms)"
    )


async def main(count: int, callers: int, parent: Path) -> None:
    modes = {"to_thread": asyncio.to_thread, "inline": inline}
    runs: dict[str, Run] = defaultdict(Run)
    share = count // ROUNDS
    with tempfile.TemporaryDirectory(dir=parent, prefix="spool-bench-") as scratch:
        root = Path(scratch)
        spools = {
            (mode, concurrency): Spool.open(root / f"{mode}-{concurrency}", 2**40)
            for mode in modes
            for concurrency in (1, callers)
        }
        for round_ in range(ROUNDS):
            raw_fsync(root, share, runs["raw"])
            for (mode, concurrency), spool in spools.items():
                vars(spool_module)["to_thread"] = modes[mode]
                run = runs[f"{mode} {concurrency}"]
                await appends(spool, round_ * share, share, concurrency, run)
        vars(spool_module)["to_thread"] = asyncio.to_thread
        for spool in spools.values():
            spool.close()

        print(f"{share * ROUNDS} appends of {len(callback(0).value)}-byte callbacks, fsync'd, in")
        print(f"{root.parent}, {ROUNDS} rounds taking turns")
        print(f"{'mode, callers':<16}{'appends/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'loop stall p99 ms':>19}{'max ms':>8}")  # fmt: skip
        for name, run in runs.items():
            stalls = (
                f"{quantile(run.stalls, 0.99) * 1e3:>19.3f}{max(run.stalls) * 1e3:>8.3f}"
                if run.stalls
                else f"{'(no loop)':>19}"
            )
            print(f"{name:<16}{run.count / run.elapsed:>10.0f}"
                  f"{quantile(run.latencies, 0.5) * 1e3:>9.3f}"
                  f"{quantile(run.latencies, 0.99) * 1e3:>9.3f}{stalls}")  # fmt: skip
        left = iter(spools)
        for batch in (1, 100, 500):  # a spool each, of those the appends left
            mode, concurrency = next(left)
            print(await forwarding(root / f"{mode}-{concurrency}", batch))


if __name__ == "__main__":
    arguments = sys.argv[1:]
    asyncio.run(
        main(
            int(arguments[0]) if arguments else 5000,
            int(arguments[1]) if len(arguments) > 1 else 50,
            Path(arguments[2]) if len(arguments) > 2 else Path.cwd(),
        )
    )
