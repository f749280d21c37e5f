"""The local three-node cluster: replicated as production is, and a node can be killed and
brought back, with its partitions' leadership moving meanwhile."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from consumer.cli.produce import produce
from consumer.devkit.broker.cluster import LocalCluster
from consumer.settings.config import KafkaSettings
from tests._support.cluster import topic_config
from tests._support.kafka_helpers import REPO, read_topic


async def test_topics_are_replicated_three_times_with_two_in_sync_required(
    kafka_cluster: LocalCluster, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """A topic created with the broker's defaults, and the offsets topic, have three replicas
    all in sync and need two in sync for a write (min.insync.replicas 2); no unclean leader
    election."""
    bootstrap = kafka_cluster.bootstrap
    await create_topic(bootstrap, unique_name, 3)
    await kafka_cluster.coordinator(unique_name)  # creates __consumer_offsets if missing
    for topic in (unique_name, "__consumer_offsets"):
        partitions = await kafka_cluster.partitions(topic)
        assert all(isr == [1, 2, 3] for _, isr in partitions.values()), partitions
        assert await topic_config(bootstrap, topic, "min.insync.replicas") == "2"
    assert await topic_config(bootstrap, unique_name, "unclean.leader.election.enable") == "false"


async def test_killed_leader_moves_and_the_node_rejoins_after_restart(
    kafka_cluster: LocalCluster, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """SIGKILL the leader of a partition: another node leads it, every acknowledged record is
    still there, the group still has a live coordinator; restarted, the node is back in every
    ISR."""
    bootstrap = kafka_cluster.bootstrap
    await create_topic(bootstrap, unique_name, 1)
    messages = [(None, f"m{n}".encode()) for n in range(50)]
    await produce(KafkaSettings(bootstrap_servers=bootstrap), unique_name, messages)
    leader = await kafka_cluster.leader(unique_name, 0)
    await asyncio.to_thread(kafka_cluster.kill, leader)
    assert leader not in kafka_cluster.running()

    async with asyncio.timeout(60):
        while True:
            if (await kafka_cluster.leader(unique_name, 0)) not in (leader, -1):
                break
            await asyncio.sleep(0.2)
    records = await read_topic(bootstrap, unique_name, seconds=60)
    assert [r.value for r in records] == [value for _, value in messages]
    assert await kafka_cluster.coordinator(unique_name) in kafka_cluster.running()

    await asyncio.to_thread(kafka_cluster.restart, leader)
    await kafka_cluster.wait_in_sync([unique_name, "__consumer_offsets"])
    assert sorted(kafka_cluster.running()) == [1, 2, 3]


def test_cluster_command_line_reports_and_refuses(tmp_path: Path) -> None:
    """`status --nodes 3` with no cluster says stopped; `--nodes` with `--secured` exits 1 with
    a reason (starting one is covered by the fixture above, through the same class)."""
    env = {"DEVKAFKA_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    devkafka = [sys.executable, "-m", "consumer.devkit.broker"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*devkafka, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
        )

    status = run("status", "--nodes", "3")
    assert (status.returncode, status.stdout) == (0, "stopped\n")
    refused = run("up", "--nodes", "3", "--secured")
    assert refused.returncode == 1
    assert "--nodes takes neither --secured nor --port" in refused.stderr
