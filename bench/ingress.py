"""The ingress measured with wrk: 1 KB callbacks POSTed over 50 keep-alive connections.

Run from the repository root (with the bench extra: ``pip install -e '.[dev,bench]'``, and
``wrk`` from Debian: ``apt-get install wrk``):

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/ingress.py \
        [--seconds 10] [--rounds 3] [servers... | --paired]

Each server runs in a process of its own (one event loop, as the ingress does), and wrk (one
thread, 50 connections, a Lua script POSTing 1 KB callbacks with Basic credentials, each for
another recording, so keyed records spread over the partitions as real traffic does) in
another. Per server the table gives requests/s, wrk's p50/p99 latency and the CPU each process
used per second of wall time: wrk well below the server shows that the server, not the load
generator, is the bottleneck (both share the machine's cores); server CPU per request compares
servers when other work on the machine takes cores too. Rounds are interleaved; medians reported.
Kafka-backed servers get a fresh 6-partition topic each; the broker is ``$KAFKA_BOOTSTRAP_SERVERS``
or the long-lived local one.

The library choice (each answers 200 to a POST after reading the body, no Kafka):

- ``aiohttp``: aiohttp's low-level ``web.Server`` on ``loop.create_server``;
- ``uvicorn``: uvicorn's ``Server.serve()`` in the same loop, httptools parser, a bare ASGI app.

The ingress against its floor and the hand-written bridge (issue 24's goals: >= 0.8x the floor
and >= 2x FastAPI in requests/s, p99 no worse than FastAPI's):

- ``ingress``: ``recording-consumer ingest`` itself (credentials checked, every callback acked);
- ``floor``: aiohttp's low-level server answering 200 after the same producer's ack, nothing else;
- ``fastapi``: bench/fastapi_bridge.py, FastAPI + pydantic model + ``send_and_wait`` per request;
- ``spooling``: the ingress with Kafka stopped (nothing listens at its bootstrap address): every
  callback fsync'd to the spool before its 200.

``--paired`` runs the ingress and the floor at once, pinned to one CPU, each with its own wrk
(bench/_ingress_paired.py): the host's noise then falls on both, and the ratio holds from round
to round where one server after the other it swings by a fifth.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import tempfile
from pathlib import Path

from _common import bootstrap, event_value, fresh, kafka_settings
from _ingress_paired import measure_paired, paired_table
from _ingress_servers import AUTH, SERVERS, run_ingress
from _wrk import CONNECTIONS, free_port, measure


def callback_body(size: int) -> bytes:
    """A recordingAvailable callback of exactly `size` bytes (its ``tag`` padded)."""
    body = event_value("r-00000001-bench", "complete")
    return body.replace(b'"tag":"', b'"tag":"' + b"x" * (size - len(body)), 1)


BODY = callback_body(1024)


KAFKA_SERVERS = ("ingress", "floor", "fastapi", "spooling")
ALL = ("aiohttp", "uvicorn", "ingress", "floor", "fastapi", "spooling")


def _server_command(name: str, port: int, bootstrap: str, spool: Path) -> list[str]:
    topic = fresh(f"ingress-{name}")
    if name in KAFKA_SERVERS:
        _create_topic(bootstrap, topic)
    here = Path(__file__).resolve().parent
    if name == "fastapi":
        return [sys.executable, str(here / "fastapi_bridge.py"), str(port), bootstrap, topic]
    if name == "spooling":
        name, bootstrap = "ingress", f"127.0.0.1:{free_port()}"
    return [
        sys.executable, __file__, "--serve", name, "--port", str(port),
        "--bootstrap", bootstrap, "--topic", topic, "--spool", str(spool / topic),
    ]  # fmt: skip


def _create_topic(bootstrap: str, topic: str) -> None:
    from consumer.kafka.topics import admin_client, create_topic

    async def create() -> None:
        async with admin_client(kafka_settings(bootstrap)) as admin:
            await create_topic(admin, topic, 6, None)

    asyncio.run(create())


def _lua_script(directory: Path) -> Path:
    token = base64.b64encode(":".join(AUTH).encode()).decode()
    body = directory / "body.json"
    body.write_bytes(BODY)
    script = directory / "post.lua"
    # Each request another recording (same length, so still exactly 1 KB): keyed records spread
    # over the partitions as Bandwidth's traffic does, as the floor's unkeyed ones do.
    script.write_text(
        f'local f = io.open("{body}", "rb")\n'
        "local template = f:read('*a')\nf:close()\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Basic {token}"\n'
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        '  local id = string.format("r-%08d-bench", n % 100000000)\n'
        '  local body = string.gsub(template, "r%-00000001%-bench", id)\n'
        "  return wrk.format(nil, nil, nil, body)\n"
        "end\n"
    )
    return script


def _table(results: dict[str, list[dict[str, float]]]) -> str:
    lines = [
        "| server | requests/s | p50 ms | p99 ms | server CPU | CPU µs/req | wrk CPU | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        lines.append(
            f"| {name} | {med['rate']:,.0f} | {med['p50'] * 1000:.2f} | {med['p99'] * 1000:.2f} "
            f"| {med['server_cpu']:.2f} | {med['server_cpu'] / med['rate'] * 1e6:.0f} "
            f"| {med['wrk_cpu']:.2f} | {med['bad']:.0f} |"
        )
    return "\n".join(lines)


def _goals(results: dict[str, list[dict[str, float]]]) -> list[str]:
    med = {
        n: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for n, runs in results.items()
    }
    if not {"ingress", "floor", "fastapi"} <= med.keys():
        return []
    ingress, floor, fastapi = med["ingress"], med["floor"], med["fastapi"]
    return [
        f"ingress / floor: {ingress['rate'] / floor['rate']:.2f}x (goal >= 0.8x)",
        f"ingress / fastapi: {ingress['rate'] / fastapi['rate']:.2f}x (goal >= 2x)",
        f"p99: ingress {ingress['p99'] * 1000:.1f} ms, fastapi {fastapi['p99'] * 1000:.1f} ms "
        "(goal: no worse)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("servers", nargs="*", default=list(ALL), help=f"of {', '.join(ALL)}")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--paired",
        action="store_true",
        help="the ingress and its floor at once on one CPU, each with its own wrk",
    )
    for hidden in ("--serve", "--bootstrap", "--topic", "--spool"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "ingress":
        run_ingress(args.port, args)
        return
    if args.serve:
        asyncio.run(SERVERS[args.serve](args.port, args))
        return
    load = os.getloadavg()[0]
    server = bootstrap()
    header = (
        f"{len(BODY)}-byte POSTs, {CONNECTIONS} keep-alive connections, wrk -t1, "
        f"{args.seconds:.0f} s x {args.rounds} rounds, {os.cpu_count()} CPUs, "
        f"load average before: {load:.1f}"
    )
    with tempfile.TemporaryDirectory() as directory:
        script = _lua_script(Path(directory))

        def command(name: str, port: int) -> list[str]:
            return _server_command(name, port, server, Path(directory))

        if args.paired:
            pair = ("ingress", "floor")
            paired = measure_paired(pair, args.rounds, args.seconds, command, script)
            print(header + "; both servers at once on one CPU")
            print(paired_table(pair, paired))
            return
        results: dict[str, list[dict[str, float]]] = {name: [] for name in args.servers}
        for _ in range(args.rounds):
            for name in args.servers:
                results[name].append(measure((name,), args.seconds, script, command)[name])
    print(header + " (medians)")
    print(_table(results))
    print("\n".join(_goals(results)))


if __name__ == "__main__":
    main()
