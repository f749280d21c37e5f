"""The ingress end to end: callbacks over real HTTP to a real broker, then through the worker;
and stopping with SIGTERM while a request is in flight."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import httpx
from aiokafka.partitioner import DefaultPartitioner

from tests._support.ingress import AUTH, callback, scrape, start_ingress, stop, wait_serving
from tests._support.kafka_helpers import (
    exit_status,
    handled_records,
    read_topic,
    wait_for,
    worker_process,
)

COUNT = 1_000


async def test_a_thousand_concurrent_callbacks_reach_the_topic_and_the_worker(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """1,000 callbacks POSTed at once over 100 connections: each answered 200 with a request id;
    each on the topic once, byte for byte, keyed by its recordingId (by callId when it has none),
    in the partition Kafka's default partitioner gives that key, with ingress.received_at and
    the same request id in its headers; the worker then handles every one of them."""
    await create_topic(kafka_bootstrap, unique_name, partitions=6)
    ingress = start_ingress(kafka_bootstrap, unique_name, tmp_path)
    bodies = [callback(f"r-{n:04d}", tag=f"n{n}") for n in range(COUNT - 1)]
    bodies.append(b'{"eventType":"transferComplete","callId":"c-only","status":"whatever"}')
    try:
        await wait_serving(ingress)
        # aiohttp's client: httpx's pool takes seconds per hundred concurrent requests.
        connector = aiohttp.TCPConnector(limit=100)
        headers = {"Authorization": aiohttp.encode_basic_auth(*AUTH)}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            answers = await asyncio.gather(*(post(session, ingress.url, body) for body in bodies))
        async with httpx.AsyncClient(timeout=30) as client:
            samples = await scrape(client, ingress.probes)
        assert [status for status, _ in answers] == [200] * COUNT
        request_ids = {body: rid for body, (_, rid) in zip(bodies, answers, strict=True)}
        assert len(set(request_ids.values())) == COUNT
        assert samples["recording_consumer_ingress_produced_total"] == COUNT
        assert samples["recording_consumer_ingress_spooled_total"] == 0
    finally:
        assert await stop(ingress) == 0

    records = await read_topic(kafka_bootstrap, unique_name)
    assert sorted(r.value for r in records) == sorted(bodies)
    now = datetime.now(UTC)
    partitions = list(range(6))
    for record in records:
        kafka_headers: dict[str, bytes] = dict(record.headers)
        assert kafka_headers["ingress.request_id"].decode() == request_ids[record.value]
        received = datetime.fromisoformat(kafka_headers["ingress.received_at"].decode())
        assert now - timedelta(minutes=5) < received <= now
        expected = (
            b"c-only"
            if b"c-only" in record.value
            else record.value.split(b'"recordingId":"')[1].split(b'"')[0]
        )
        assert record.key == expected
        assert record.partition == DefaultPartitioner()(record.key, partitions, partitions)

    handled = tmp_path / "handled"
    worker = worker_process(kafka_bootstrap, unique_name, handled, until_idle=3)
    assert await exit_status(worker, 120) == 0
    handled_ids = sorted(rid for _, _, rid in handled_records(handled))
    assert handled_ids == sorted(f"r-{n:04d}" for n in range(COUNT - 1))


async def test_sigterm_answers_the_request_in_flight_and_exits_0(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """SIGTERM while a callback's body is still arriving: the ingress stops accepting new
    connections, answers that callback 200 once its body is complete and stored, and exits 0;
    the callback is on the topic."""
    await create_topic(kafka_bootstrap, unique_name)
    ingress = start_ingress(kafka_bootstrap, unique_name, tmp_path)
    body = callback("r-in-flight")
    try:
        await wait_serving(ingress)
        host, port = ingress.url.split("/")[2].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        token = base64.b64encode(":".join(AUTH).encode()).decode()
        head = (
            f"POST /callbacks HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        writer.write(head + body[:100])
        await writer.drain()
        ingress.process.send_signal(15)
        await wait_for_log(ingress.events, "stopping: answering requests in flight")
        try:
            await asyncio.open_connection(host, int(port))
            raise AssertionError("a new connection was accepted after SIGTERM")
        except ConnectionRefusedError:
            pass
        writer.write(body[100:])
        await writer.drain()
        async with asyncio.timeout(30):
            answer = await reader.read(65536)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert await asyncio.to_thread(ingress.process.wait, 60) == 0
    finally:
        ingress.kill()
    records = await read_topic(kafka_bootstrap, unique_name)
    assert [r.value for r in records] == [body]


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, str]:
    """POST `body`; its status and X-Request-Id."""
    async with session.post(url, data=body, timeout=aiohttp.ClientTimeout(total=60)) as answer:
        await answer.read()
        return answer.status, answer.headers["X-Request-Id"]


async def wait_for_log(events: Callable[[], list[dict[str, object]]], event: str) -> None:
    """Poll the process's log until `event` is in it."""
    await wait_for(lambda: any(e["event"] == event for e in events()), 30, event)
