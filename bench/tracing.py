"""What tracing costs the worker: off (no OTEL_* variable) against the code before tracing,
and on at 1% and 100% sampling, exporting over OTLP/HTTP to a receiver in this process.

Run from the repository root:

    .venv/bin/python bench/tracing.py [count] [rounds] [--baseline REF]

(default 50,000 events on 6 partitions, 5 rounds, medians). The baseline is `REF`'s
``consumer`` package (default: where this branch left ``main``), extracted with ``git archive``
into a temporary directory and put first on the worker process's path. Each round runs the
four workers in turn, interleaved so a noisy moment on the shared machine hurts all alike; each
is the quiet worker of bench/throughput.py (level warning, a no-op handler), timed the same
way. The cost per message is the difference of the per-message times (1/rate) with the off run's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import AsyncIterator, Iterator
from io import BytesIO
from pathlib import Path

from _common import bootstrap, fresh, kafka_settings, messages, publish_backlog
from _throughput_runs import ROOT, Backlog, Run, _time_process, worker_config
from aiohttp import web

from consumer.devkit.broker import free_port
from consumer.kafka.topics import end_offsets

PARTITIONS = 6
CPUINFO = Path("/proc/cpuinfo")
TODAY = "baseline: the code before tracing"
OFF = "tracing off (no OTEL_* variable)"
ONE_PERCENT = "tracing on, 1% sampled, OTLP/HTTP"
ALL = "tracing on, 100% sampled, OTLP/HTTP"
SAMPLING = {ONE_PERCENT: "0.01", ALL: "1.0"}


def cpu_model() -> str:
    for line in CPUINFO.read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def load() -> str:
    return "load average " + ", ".join(f"{n:.2f}" for n in os.getloadavg())


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[str]:
    """An OTLP/HTTP endpoint on loopback that accepts and drops every export."""

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def baseline(ref: str | None) -> Iterator[Path]:
    """`ref`'s consumer package in a temporary directory."""
    if ref is None:
        ref = git("merge-base", "HEAD", "main").decode().strip()
    print(f"baseline: {ref}")
    archive = git("archive", ref, "consumer")
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=True).stdout


@contextlib.contextmanager
def environment(**variables: str) -> Iterator[None]:
    """The worker process inherits `variables`; OTEL_* ones unset otherwise."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        del os.environ[name]
    os.environ.update(variables)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def run_worker(backlog: Backlog, path_first: Path | None = None) -> Run:
    """The quiet worker, with `path_first` ahead of everything on its import path."""
    group = fresh("tracing")
    start = "import sys; from consumer.cli.main import main; sys.exit(main())"
    if path_first is not None:
        start = f"import sys; sys.path.insert(0, {str(path_first)!r}); {start}"
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp:
        config = Path(tmp) / "consumer.toml"
        config.write_text(worker_config(backlog, group, "warning"))
        command = [sys.executable, "-c", start, "run", "--config", str(config)]
        return await _time_process(backlog, group, command, Path(tmp))


async def main(server: str, count: int, rounds: int, ref: str | None) -> None:
    print(f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; {load()}")
    topic = fresh("tracing")
    await publish_backlog(server, topic, PARTITIONS, messages(count))
    ends = await end_offsets(kafka_settings(server), topic)
    backlog = Backlog(server, topic, count, {tp.partition: end for tp, end in ends.items()})
    print(f"{count:,} events on {PARTITIONS} partitions; medians of {rounds} interleaved rounds")
    rates: dict[str, list[float]] = {name: [] for name in (TODAY, OFF, ONE_PERCENT, ALL)}
    with baseline(ref) as before:
        async with receiver() as endpoint:
            for n in range(1, rounds + 1):
                for name in rates:
                    sampled = SAMPLING.get(name)
                    on = {
                        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                        "OTEL_TRACES_SAMPLER_ARG": sampled or "",
                    }
                    with environment(**(on if sampled else {})):
                        timed = await run_worker(backlog, before if name == TODAY else None)
                    rates[name].append(count / timed.seconds)
                    print(
                        f"  round {n}/{rounds}: {name}: {count / timed.seconds:,.0f} events/s",
                        file=sys.stderr,
                    )
    median = {name: statistics.median(found) for name, found in rates.items()}
    spread = {name: (min(found), max(found)) for name, found in rates.items()}
    print("\n| worker (quiet) | events/s (median) | min-max | cost per message vs off |")
    print("|---|---|---|---|")
    for name, rate in median.items():
        low, high = spread[name]
        cost = (1 / rate - 1 / median[OFF]) * 1e6
        print(f"| {name} | {rate:,.0f} | {low:,.0f}-{high:,.0f} | {cost:+.1f} µs |")
    print(f"at the end: {load()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The worker's throughput with tracing.")
    parser.add_argument("count", nargs="?", type=int, default=50_000, help="events")
    parser.add_argument("rounds", nargs="?", type=int, default=5, help="rounds (medians)")
    parser.add_argument("--baseline", help="git ref of the code before tracing")
    args = parser.parse_args()
    # Outside the loop: starting the local broker runs a loop of its own.
    asyncio.run(main(bootstrap(), args.count, args.rounds, args.baseline))
