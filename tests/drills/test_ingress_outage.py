"""The invariant under failure: the broker killed under load, the ingress killed with a spool,
a spool cut mid-record, a spool full or unwritable. Real broker, real HTTP, the ingress as a
process."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import pytest

from consumer.devkit.broker import LocalBroker, free_port
from tests._support.ingress import (
    AUTH,
    Ingress,
    callback,
    scrape,
    start_ingress,
    stop,
    wait_serving,
)
from tests._support.kafka_helpers import read_topic, wait_for

KEYS = 10


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client with the ingress's credentials (aiohttp's: it keeps up with the load)."""
    headers = {"Authorization": aiohttp.encode_basic_auth(*AUTH)}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as client:
        yield client


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> aiohttp.ClientResponse:
    async with session.post(url, data=body) as answer:
        await answer.read()
        return answer


async def samples_of(ingress: Ingress) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10) as client:
        return await scrape(client, ingress.probes)


async def wait_for_sample(
    ingress: Ingress, name: str, holds: Callable[[float], bool], seconds: float
) -> None:
    """Poll the ingress's metrics until sample `name` satisfies `holds`."""
    deadline = time.monotonic() + seconds
    while not holds((await samples_of(ingress)).get(name, float("nan"))):
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} did not reach the expected value in {seconds} s")
        await asyncio.sleep(0.2)


async def chattr(flag: str, path: Path) -> None:
    """Immutable (+i) stops root too, as a read-only volume would; chmod would not."""
    process = await asyncio.create_subprocess_exec("chattr", flag, str(path))
    assert await process.wait() == 0


def dead_kafka() -> str:
    """A bootstrap address nothing listens on: Kafka away."""
    return f"127.0.0.1:{free_port()}"


async def test_broker_killed_under_load_loses_no_acknowledged_callback(
    private_broker: LocalBroker,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
    session: aiohttp.ClientSession,
) -> None:
    """10 recordings post their callbacks one after another (each waits for its answer) while
    the broker is SIGKILLed and restarted 20 s later: every callback is answered 200 (spooled
    during the outage), every one is on the topic afterwards (0 lost), each recording's
    callbacks first appear in the order they were posted; duplicates are counted and exact."""
    bootstrap = private_broker.bootstrap
    await create_topic(bootstrap, unique_name, partitions=3)
    ingress = start_ingress(bootstrap, unique_name, tmp_path, INGRESS__ACK_TIMEOUT="1")
    answered: dict[str, list[int]] = defaultdict(list)
    statuses: list[int] = []
    running = True

    async def recording(key: str) -> None:
        seq = 0
        while running:
            answer = await post(session, ingress.url, callback(key, tag=str(seq)))
            statuses.append(answer.status)
            if answer.status == 200:
                answered[key].append(seq)
            seq += 1
            await asyncio.sleep(0.01)  # pacing: about 500 callbacks/s in all

    try:
        await wait_serving(ingress)
        load = [asyncio.create_task(recording(f"r-key-{k}")) for k in range(KEYS)]
        await wait_for(lambda: len(statuses) >= 300, 60, "300 answers before the outage")
        await asyncio.to_thread(private_broker.kill)
        killed = time.monotonic()
        await wait_for_sample(ingress, "recording_consumer_ingress_kafka_up", lambda v: v == 0, 30)
        await wait_for(lambda: time.monotonic() - killed >= 20, 30, "20 s of outage")
        spooled = (await samples_of(ingress))["recording_consumer_ingress_spooled_total"]
        assert spooled > 100
        await asyncio.to_thread(private_broker.restart)
        after = len(statuses)
        await wait_for_sample(ingress, "recording_consumer_ingress_kafka_up", lambda v: v == 1, 120)
        await wait_for(lambda: len(statuses) >= after + 300, 60, "300 answers after the outage")
        running = False
        await asyncio.gather(*load)
        await wait_for_sample(
            ingress, "recording_consumer_ingress_spool_messages", lambda v: v == 0, 120
        )
        assert await stop(ingress) == 0
    finally:
        running = False
        ingress.kill()

    assert set(statuses) == {200}
    records = await read_topic(bootstrap, unique_name, seconds=60)
    on_topic: dict[str, list[int]] = defaultdict(list)
    for record in records:
        key = record.key.decode()
        seq = int(record.value.split(b'"tag":"')[1].split(b'"')[0])
        assert record.value == callback(key, tag=str(seq))  # byte for byte, duplicates too
        on_topic[key].append(seq)
    duplicates = 0
    for key, seqs in answered.items():
        first_seen = list(dict.fromkeys(on_topic[key]))
        assert first_seen[: len(seqs)] == seqs, f"{key}: lost or out of order"
        duplicates += len(on_topic[key]) - len(first_seen)
    total = sum(len(seqs) for seqs in answered.values())
    print(f"{total} callbacks answered 200, {spooled:.0f} spooled, {duplicates} duplicates")


async def test_ingress_killed_with_a_spool_forwards_it_first_on_restart(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
    session: aiohttp.ClientSession,
) -> None:
    """Started while Kafka is away, the ingress takes 50 callbacks into its spool (200 each);
    SIGKILLed, then restarted with Kafka back, it forwards the spool first: the 50 reach the
    topic in arrival order, followed by callbacks posted after the restart, none lost."""
    await create_topic(kafka_bootstrap, unique_name)
    away = start_ingress(dead_kafka(), unique_name, tmp_path)
    first = [callback(f"r-{n % 5}", tag=f"first-{n}") for n in range(50)]
    try:
        await wait_serving(away, kafka=False)
        assert [(await post(session, away.url, body)).status for body in first] == [200] * 50
        samples = await samples_of(away)
        assert samples["recording_consumer_ingress_spool_messages"] == 50
        assert samples["recording_consumer_ingress_kafka_up"] == 0
    finally:
        away.kill()
    assert away.process.returncode == -9

    back = start_ingress(kafka_bootstrap, unique_name, tmp_path)
    then = [callback(f"r-{n % 5}", tag=f"then-{n}") for n in range(10)]
    try:
        await wait_serving(back, kafka=False)
        assert [(await post(session, back.url, body)).status for body in then] == [200] * 10
        await wait_for_sample(
            back, "recording_consumer_ingress_spool_messages", lambda v: v == 0, 60
        )
        assert await stop(back) == 0
    finally:
        back.kill()
    records = await read_topic(kafka_bootstrap, unique_name)
    assert [r.value for r in records] == first + then
    left = [
        e for e in back.events() if e["event"] == "forwarding the spool left by the last run first"
    ]
    assert left[0]["callbacks"] == 50


async def test_a_spool_cut_mid_record_is_forwarded_up_to_the_cut_and_says_so(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
    session: aiohttp.ClientSession,
) -> None:
    """A spool whose last record was cut (a crash mid-write, made by truncating the file) is
    forwarded up to the cut on restart, never half a record, and the log says what was cut."""
    await create_topic(kafka_bootstrap, unique_name)
    away = start_ingress(dead_kafka(), unique_name, tmp_path)
    bodies = [callback(f"r-{n}") for n in range(5)]
    try:
        await wait_serving(away, kafka=False)
        assert [(await post(session, away.url, body)).status for body in bodies] == [200] * 5
    finally:
        away.kill()
    segment = max(away.spool.glob("*.spool"))
    with segment.open("r+b") as f:
        f.truncate(segment.stat().st_size - 7)

    back = start_ingress(kafka_bootstrap, unique_name, tmp_path)
    try:
        await wait_serving(back)
        await wait_for_sample(
            back, "recording_consumer_ingress_spool_messages", lambda v: v == 0, 60
        )
        assert await stop(back) == 0
    finally:
        back.kill()
    records = await read_topic(kafka_bootstrap, unique_name)
    assert [r.value for r in records] == bodies[:4]
    (cut,) = [e for e in back.events() if e["event"].startswith("spool record cut short")]
    assert cut["file"].endswith(segment.name)
    assert cut["dropped_bytes"] > 0


async def test_a_full_spool_answers_503_with_retry_after_while_kafka_is_away(
    unique_name: str, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Kafka away and a 16 KiB spool: callbacks are answered 200 while they fit, then 503 with
    Retry-After, never 200 again while full; what was answered 200 is exactly what the spool
    holds; /readyz fails (nothing can be stored)."""
    ingress = start_ingress(dead_kafka(), unique_name, tmp_path, INGRESS__SPOOL_MAX_BYTES="16384")
    try:
        await wait_serving(ingress, kafka=False)
        answers = [await post(session, ingress.url, callback(f"r-{n}")) for n in range(40)]
        statuses = [a.status for a in answers]
        full = statuses.index(503)
        assert full > 0
        assert statuses == [200] * full + [503] * (40 - full)
        assert all(int(a.headers["Retry-After"]) > 0 for a in answers[full:])
        samples = await samples_of(ingress)
        assert samples["recording_consumer_ingress_spool_messages"] == full
        assert (
            samples['recording_consumer_ingress_refusals_total{reason="spool_full"}'] == 40 - full
        )
        async with httpx.AsyncClient() as client:
            assert (await client.get(ingress.probes + "/readyz")).status_code == 503
        assert await stop(ingress) == 0
    finally:
        ingress.kill()


async def test_an_unwritable_spool_answers_503_with_retry_after_while_kafka_is_away(
    unique_name: str, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Kafka away and the spool directory made read-only (immutable: root is stopped too):
    every callback is answered 503 with Retry-After, none 200; counted as spool_unwritable;
    /readyz fails. Writable again, the next callback is taken (200)."""
    ingress = start_ingress(dead_kafka(), unique_name, tmp_path)
    try:
        await wait_serving(ingress, kafka=False)
        await chattr("+i", ingress.spool)
        try:
            answers = [await post(session, ingress.url, callback(f"r-{n}")) for n in range(5)]
            assert [a.status for a in answers] == [503] * 5
            assert all(int(a.headers["Retry-After"]) > 0 for a in answers)
            samples = await samples_of(ingress)
            assert (
                samples['recording_consumer_ingress_refusals_total{reason="spool_unwritable"}'] == 5
            )
            assert samples["recording_consumer_ingress_spool_messages"] == 0
            async with httpx.AsyncClient() as client:
                assert (await client.get(ingress.probes + "/readyz")).status_code == 503
        finally:
            await chattr("-i", ingress.spool)
        assert (await post(session, ingress.url, callback("r-later"))).status == 200
        assert await stop(ingress) == 0
    finally:
        ingress.kill()
