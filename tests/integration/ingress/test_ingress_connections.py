"""Connections cannot be hoarded (issue 21, row 5): slow or idle clients against the ingress and
the worker's observability port, each process under a low open-file limit."""

from __future__ import annotations

import asyncio
import base64
import resource
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from consumer.cli.produce import produce
from consumer.devkit.broker import free_port
from consumer.observability import serving
from consumer.settings.config import KafkaSettings
from tests._support.ingress import AUTH, callback, start_ingress, stop, wait_serving
from tests._support.kafka_helpers import (
    exit_status,
    handled_lines,
    read_topic,
    recording_message,
    wait_for,
    worker_process,
)

FD_LIMIT = 256
HELD = 300


def low_fd_limit() -> None:
    """Runs in the child before exec: soft and hard limit both FD_LIMIT (raising cannot help)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@asynccontextmanager
async def held_connections(
    address: str, count: int, sent: bytes
) -> AsyncIterator[list[asyncio.StreamReader]]:
    """`count` connections to `address`, each having sent `sent` and then nothing more."""
    host, port = address.split(":")
    writers: list[asyncio.StreamWriter] = []
    readers: list[asyncio.StreamReader] = []
    try:
        for _ in range(count):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(sent)
            readers.append(reader)
            writers.append(writer)
        yield readers
    finally:
        for writer in writers:
            writer.close()


async def probe_all(client: httpx.AsyncClient, url: str, times: int) -> list[int]:
    """GET `url` `times` times, each on a new connection; the statuses."""
    statuses = []
    for _ in range(times):
        answer = await client.get(url, headers={"Connection": "close"})
        statuses.append(answer.status_code)
    return statuses


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read(65536) == b"" or reader.at_eof()
    except ConnectionResetError:
        return True


async def test_slow_clients_cannot_exhaust_the_ingress_under_a_low_fd_limit(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """Under `ulimit -n 256` the ingress lowers its connection cap to fit (and says so); 300
    connections stalled mid-headers do not keep a callback out (200) nor /healthz (16 of 16
    answered), the stalled ones are closed by the header deadline, a body trickling past the
    body deadline gets 408, and no `Too many open files` is logged."""
    await create_topic(kafka_bootstrap, unique_name)
    ingress = start_ingress(
        kafka_bootstrap,
        unique_name,
        tmp_path,
        preexec_fn=low_fd_limit,
        INGRESS__HEADER_TIMEOUT="3",
        INGRESS__BODY_TIMEOUT="2",
    )
    address = ingress.url.split("/")[2]
    try:
        await wait_serving(ingress)
        (lowered,) = [
            e for e in ingress.events() if e["event"].startswith("ingress.max_connections")
        ]
        assert lowered["used"] < FD_LIMIT
        stalled = b"POST /callbacks HTTP/1.1\r\nHost: x\r\nContent-Le"
        async with (
            held_connections(address, HELD, stalled) as readers,
            httpx.AsyncClient(timeout=10) as client,
        ):
            answer = await client.post(ingress.url, content=callback("r-1"), auth=AUTH)
            assert answer.status_code == 200
            assert await probe_all(client, ingress.probes + "/healthz", 16) == [200] * 16
            async with asyncio.timeout(30):
                closed = await asyncio.gather(*(closed_by_server(r) for r in readers))
            assert all(closed)

        token = base64.b64encode(":".join(AUTH).encode()).decode()
        head = (
            f"POST /callbacks HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n"
            "Content-Length: 500\r\n\r\n{"
        ).encode()
        async with held_connections(address, 1, head) as (trickling,):
            async with asyncio.timeout(30):
                assert (await trickling.read(65536)).startswith(b"HTTP/1.1 408 ")
        assert await stop(ingress) == 0
    finally:
        ingress.kill()
    assert "Too many open files" not in ingress.log.read_text()


async def test_the_observability_port_survives_300_idle_connections_under_a_low_fd_limit(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """Issue 21, row 5: the worker under `ulimit -n 256` with 300 idle connections held to its
    observability port: 16 of 16 /healthz probes answer 200, all 40 events are handled by a
    handler that opens a file per event (none dead-lettered), no `Too many open files`."""
    await create_topic(kafka_bootstrap, unique_name)
    port = free_port()
    handled = tmp_path / "handled"
    worker = worker_process(
        kafka_bootstrap,
        unique_name,
        handled,
        preexec_fn=low_fd_limit,
        OBSERVABILITY__LISTEN=f"127.0.0.1:{port}",
    )
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            await wait_for_status(client, f"http://127.0.0.1:{port}/readyz", 200)
            async with held_connections(f"127.0.0.1:{port}", HELD, b""):
                kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
                events = [recording_message(f"r-{n:02d}") for n in range(40)]
                await produce(kafka, unique_name, events)
                url = f"http://127.0.0.1:{port}/healthz"
                assert await probe_all(client, url, 16) == [200] * 16
                await wait_for(lambda: len(handled_lines(handled)) >= 40, 60, "40 events handled")
        worker.send_signal(15)
        assert await exit_status(worker) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    log = handled.with_name(handled.name + ".log").read_text()
    assert "Too many open files" not in log
    assert await read_topic(kafka_bootstrap, f"{unique_name}.dlq") == []
    assert len(set(handled_lines(handled))) == 40


async def wait_for_status(client: httpx.AsyncClient, url: str, status: int) -> None:
    async with asyncio.timeout(90):
        while True:
            try:
                if (await client.get(url)).status_code == status:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


def test_the_open_file_soft_limit_is_raised_to_the_hard_limit() -> None:
    """raise_fd_limit (called by `run` and `ingest` at start-up) lifts the soft limit to the
    hard one and returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard, 256), hard))
    try:
        assert serving.raise_fd_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
