"""Drills on the three-broker cluster (RF 3, min.insync.replicas 2): worker processes while the
source topic's leader or the group's coordinator is SIGKILLed, through a rolling restart, and
with two brokers down, so the dead-letter topic refuses writes for lack of in-sync replicas.
Each counts lost, duplicated and overlapping attempts from the handlers' journal
(tests/_support/drill.py) and prints its figures (``pytest -m drill -s`` shows them)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic

from consumer.cli.produce import produce
from consumer.devkit.broker.cluster import LocalCluster
from consumer.kafka.clients import build_producer
from consumer.kafka.topics import admin_client
from consumer.settings.config import KafkaSettings
from tests._support.drill import (
    Report,
    attempts,
    check,
    events,
    eventually,
    every_offset,
    fully_committed,
    log_of,
)
from tests._support.kafka_helpers import (
    exit_status,
    read_topic,
    recording_message,
    wait_for,
    worker_process,
)

pytestmark = pytest.mark.drill

WORKER = {
    "ENGINE__MAX_IN_FLIGHT": "4",
    "ENGINE__MAX_BUFFERED": "40",
    "ENGINE__FETCH_MAX_RECORDS": "20",
    "TEST_HANDLER_DELAY": "0.02",
}
DUPLICATES_BOUND = 40 + 4
"""At most what one worker holds uncommitted (engine.max_buffered plus running handlers)."""


class Stream:
    """Sends a few events every 0.1 s through the project's producer until `stop`ped; counts
    what the cluster acknowledged, and every send that failed."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._kafka = KafkaSettings(bootstrap_servers=bootstrap)
        self._topic = topic
        self._done = asyncio.Event()
        self.acknowledged = 0
        self.failed: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._done.set()
        assert self._task is not None
        await self._task

    async def more(self, count: int, seconds: float = 120) -> None:
        """Return once `count` more events than now were acknowledged."""
        target = self.acknowledged + count
        await wait_for(lambda: self.acknowledged >= target, seconds, f"{count} more sent")

    async def _run(self) -> None:
        producer = build_producer(self._kafka, linger_ms=5)
        await producer.start()
        try:
            n = 0
            while not self._done.is_set():
                batch = [recording_message(f"s-{n + i:05d}") for i in range(4)]
                n += len(batch)
                sends = [await producer.send(self._topic, v, key=k) for k, v in batch]
                for (key, _), outcome in zip(
                    batch, await asyncio.gather(*sends, return_exceptions=True), strict=True
                ):
                    if isinstance(outcome, BaseException):
                        self.failed.append(f"{key!r}: {outcome!r}")
                    else:
                        self.acknowledged += 1
                await asyncio.sleep(0.1)
        finally:
            await producer.stop()


async def start_drill(
    cluster: LocalCluster, topic: str, partitions: int, create: Callable[..., Awaitable[None]]
) -> Stream:
    """The source topic with a backlog of 200 events, and a steady stream into it, started."""
    await create(cluster.bootstrap, topic, partitions)
    await produce(KafkaSettings(bootstrap_servers=cluster.bootstrap), topic, events(200, 40))
    stream = Stream(cluster.bootstrap, topic)
    stream.start()
    return stream


async def finish_drill(
    name: str,
    cluster: LocalCluster,
    topic: str,
    stream: Stream,
    workers: list[tuple[subprocess.Popen[bytes], Path]],
    journal: Path,
    started: float,
) -> Report:
    """Stop the stream, wait until everything is committed, stop the workers (each must still
    be its first process), and count what happened to every event in the topic."""
    await stream.stop()
    assert not stream.failed, stream.failed[:5]
    await eventually(fully_committed(cluster.bootstrap, topic), 180, "all committed")
    for worker, handled in workers:
        assert worker.poll() is None, f"a worker exited: {log_of(handled)[-2000:]}"
        assert log_of(handled).count('"worker started"') == 1, "a worker restarted"
        worker.send_signal(signal.SIGTERM)
    for worker, _ in workers:
        assert await exit_status(worker, 90) == 0
    expected = await every_offset(cluster.bootstrap, topic)
    # Nothing the producer was told is written went missing, nor was written twice.
    assert len(expected) == 200 + stream.acknowledged
    report = check(name, journal, expected, started)
    assert (report.lost, report.overlapped) == (0, 0)
    assert report.duplicated <= DUPLICATES_BOUND * len(workers)
    return report


async def killed_mid_stream(
    cluster: LocalCluster,
    topic: str,
    create: Callable[..., Awaitable[None]],
    tmp_path: Path,
    victim: Callable[[], Awaitable[int]],
    name: str,
) -> None:
    """SIGKILL the node `victim` names once the worker is under way; check the drill once
    another node has taken over and the stream went on past it."""
    started = time.monotonic()
    stream = await start_drill(cluster, topic, 3, create)
    journal, handled = tmp_path / "journal", tmp_path / "handled"
    worker = worker_process(
        cluster.bootstrap, topic, handled, None, **WORKER, TEST_JOURNAL_FILE=str(journal)
    )
    await wait_for(lambda: len(attempts(journal)) >= 150, 120, "150 handled")
    node = await victim()
    await asyncio.to_thread(cluster.kill, node)

    async def moved() -> bool:
        return await victim() not in (node, -1)

    await eventually(moved, 60, f"another node than {node} taking over")
    await stream.more(100)
    await finish_drill(name, cluster, topic, stream, [(worker, handled)], journal, started)


async def test_source_partition_leader_killed_mid_stream(
    kafka_cluster: LocalCluster,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """The node leading a source partition is SIGKILLed while the worker reads and events keep
    arriving: nothing lost, no event in two places at once, duplicates within one worker's
    uncommitted window, and the worker process never restarts."""

    async def leader() -> int:
        return await kafka_cluster.leader(unique_name, 0)

    await killed_mid_stream(
        kafka_cluster, unique_name, create_topic, tmp_path, leader, "3 nodes: leader killed"
    )


async def test_group_coordinator_killed_mid_stream(
    kafka_cluster: LocalCluster,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """The node coordinating the worker's group is SIGKILLed mid-stream (commits and heartbeats
    go to a node that is gone): nothing lost, duplicates bounded, no worker restart."""

    async def coordinator() -> int:
        return await kafka_cluster.coordinator(unique_name)

    name = "3 nodes: coordinator killed"
    await killed_mid_stream(kafka_cluster, unique_name, create_topic, tmp_path, coordinator, name)


async def test_rolling_restart_under_a_steady_stream_with_two_workers(
    kafka_cluster: LocalCluster,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """Each node in turn is stopped (SIGTERM), events keep arriving while it is down, and it is
    restarted and back in every ISR before the next: two workers in one group lose nothing and
    never run one event at the same time."""
    started = time.monotonic()
    stream = await start_drill(kafka_cluster, unique_name, 4, create_topic)
    journal = tmp_path / "journal"
    workers = []
    for name in ("first", "second"):
        handled = tmp_path / name
        env = {**WORKER, "TEST_JOURNAL_FILE": str(journal)}
        workers.append(
            (worker_process(kafka_cluster.bootstrap, unique_name, handled, None, **env), handled)
        )
    await wait_for(lambda: len(attempts(journal)) >= 100, 120, "100 handled")
    for node in (1, 2, 3):
        await asyncio.to_thread(kafka_cluster.stop_node, node)
        await stream.more(40)
        await asyncio.to_thread(kafka_cluster.restart, node)
        await kafka_cluster.wait_in_sync([unique_name, "__consumer_offsets"], 120)
    await finish_drill(
        "3 nodes: rolling restart, 2 workers",
        kafka_cluster,
        unique_name,
        stream,
        workers,
        journal,
        started,
    )
    pids = {a.pid for tries in attempts(journal).values() for a in tries}
    assert len(pids) == 2, "both workers handled events"


async def committed_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """The offsets `topic`'s group (named as the topic) has committed, asked of its coordinator
    alone: with two brokers down a partition's new leader may not answer for its end offset."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=topic)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}
    finally:
        await consumer.stop()


async def test_two_brokers_down_the_dead_letter_waits_and_other_partitions_go_on(
    kafka_cluster: LocalCluster, unique_name: str, tmp_path: Path
) -> None:
    """Two of the three brokers SIGKILLed: the dead-letter topic (the cluster's defaults: RF 3,
    min.insync.replicas 2) refuses the poison message's dead letter with NotEnoughReplicas, and
    the offsets topic every commit, so nothing is committed past the poison message; meanwhile
    every event of the partition the surviving broker leads without a poison message is handled.
    Once one broker returns, the dead letter is written once and every partition committed,
    nothing lost or handled twice."""
    started = time.monotonic()
    bootstrap = kafka_cluster.bootstrap
    survivor = await kafka_cluster.coordinator(unique_name)
    first, second = (n for n in kafka_cluster.running() if n != survivor)
    # The survivor leads partitions 0 (with the poison) and 1; a victim leads partition 2.
    leaders = {0: survivor, 1: survivor, 2: first}
    assignment = {0: [survivor, first, second], 1: [survivor, second, first]}
    assignment[2] = [first, survivor, second]
    async with admin_client(KafkaSettings(bootstrap_servers=bootstrap)) as admin:
        await admin.create_topics([NewTopic(unique_name, -1, -1, assignment)])

    async def led_as_assigned() -> bool:
        state = await kafka_cluster.partitions(unique_name)
        return {p: leader for p, (leader, _) in state.items()} == leaders

    await eventually(led_as_assigned, 30, "the assigned leaders")
    journal, handled = tmp_path / "journal", tmp_path / "handled"
    worker = worker_process(
        bootstrap,
        unique_name,
        handled,
        ENGINE__ORDERING="partition",
        ENGINE__MAX_BUFFERED="30",
        ENGINE__FETCH_MAX_RECORDS="10",
        TEST_JOURNAL_FILE=str(journal),
    )
    # All brokers up while the worker joins and creates its dead-letter topic.
    await wait_for(lambda: "partitions assigned" in log_of(handled), 120, "the worker's share")
    poison = b"not json"
    # The worker is frozen (SIGSTOP, a few seconds: well inside its session) while the events
    # are written and two brokers killed, so it meets them, the poison included, only then.
    worker.send_signal(signal.SIGSTOP)
    try:
        producer = build_producer(KafkaSettings(bootstrap_servers=bootstrap))
        await producer.start()
        try:
            stream = events(245, 49)
            for key, value in stream[:5]:
                await producer.send(unique_name, value, key=key, partition=0)
            await producer.send(unique_name, poison, partition=0)  # offset 5
            for n, (key, value) in enumerate(stream[5:]):
                await producer.send(unique_name, value, key=key, partition=n % 3)
            await producer.flush()
        finally:
            await producer.stop()
        for node in (first, second):
            await asyncio.to_thread(kafka_cluster.kill, node)
    finally:
        worker.send_signal(signal.SIGCONT)
    down = time.monotonic()
    expected = {(0, o) for o in range(86)} | {(p, o) for p in (1, 2) for o in range(80)}
    good = expected - {(0, 5)}

    def finished() -> set[tuple[int, int]]:
        return {e for e, tries in attempts(journal).items() if any(a.finished for a in tries)}

    before_poison = {(0, o) for o in range(5)}
    flowing = before_poison | {(1, o) for o in range(80)}
    await wait_for(lambda: flowing <= finished(), 120, "partition 1 handled, two brokers down")
    flowed = time.monotonic() - down
    # A first attempt sent before the dead brokers are fenced may wait out the producer's
    # request timeout (40 s) before a retry meets NotEnoughReplicas.
    await wait_for(lambda: "NotEnoughReplicas" in log_of(handled), 120, "the dead letter refused")
    refused = time.monotonic() - down
    committed = await committed_offsets(bootstrap, unique_name, 3)
    done = finished()
    print(
        f"two down: partition 1 handled after {flowed:.1f}s, NotEnoughReplicas after "
        f"{refused:.1f}s; handled {[sum(1 for e in done if e[0] == p) for p in (0, 1, 2)]}; "
        f"committed {committed}"
    )
    # The offsets topic needs two in-sync replicas too: no commit goes through, the poison's
    # partition's included, so nothing is committed past the poison message.
    assert committed == {0: 0, 1: 0, 2: 0}
    assert await read_topic(bootstrap, f"{unique_name}.dlq", seconds=5) == []
    await asyncio.to_thread(kafka_cluster.restart, first)
    back = time.monotonic()
    await eventually(fully_committed(bootstrap, unique_name), 120, "all committed")
    print(f"committed {time.monotonic() - back:.1f}s after one broker returned")
    worker.send_signal(signal.SIGTERM)
    assert await exit_status(worker) == 0

    (dead,) = await read_topic(bootstrap, f"{unique_name}.dlq")
    assert dead.value == poison
    assert await every_offset(bootstrap, unique_name) == expected
    report = check("3 brokers: two down, dead letter refused", journal, good, started)
    assert (report.lost, report.duplicated) == (0, 0)
