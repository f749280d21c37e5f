"""A local replicated Apache Kafka: N broker-only KRaft nodes and one controller on loopback.

Production clusters run three or more brokers, replication factor 3 and ``min.insync.replicas``
2, and lose brokers; this cluster is configured the same way, internal topics included, so
drills can kill a partition's leader or the group's coordinator and see what a worker does.

    python -m consumer.devkit.broker up --nodes 3

The KRaft quorum is one controller-only process apart from the brokers, as production
clusters separate them: with the brokers voting too, two of three down left no controller
(no leader moved, nothing flowed), and a drill could not take two brokers away. Every node is
a `LocalBroker` (same jars, same process handling) with its own state directory ``node-<id>``
(``controller`` for the controller) under the cluster's; `kill`, `stop_node` and `restart` act
on one broker by id and never touch the controller.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from aiokafka.errors import KafkaError

from consumer.devkit.broker.home import BrokerError, say
from consumer.devkit.broker.jars import ensure_jars
from consumer.devkit.broker.nodes import (
    CONTROLLER_ID,
    ClusterController,
    ClusterNode,
    cluster_id,
    format_storage,
    prepare,
    render_broker_properties,
    render_controller_properties,
)
from consumer.devkit.broker.ports import free_ports
from consumer.devkit.broker.private import private_dir
from consumer.kafka.clients import registered_brokers
from consumer.kafka.topics import admin_client
from consumer.settings.config import KafkaSettings


class LocalCluster:
    """`nodes` KRaft brokers whose state lives in ``state_dir/node-<id>`` (ids start at 1), and
    their controller in ``state_dir/controller``."""

    def __init__(self, state_dir: Path, nodes: int = 3) -> None:
        if nodes < 1:
            raise BrokerError(f"a cluster needs at least one node, not {nodes}")
        self.state_dir = state_dir.absolute()
        self.size = nodes
        self.nodes: list[ClusterNode] = []
        self.controller = ClusterController(self.state_dir / "controller", CONTROLLER_ID, None)

    @property
    def bootstrap(self) -> str:
        """Every node's address, comma-separated, as clients take ``bootstrap_servers``."""
        return ",".join(node.bootstrap for node in self.nodes if node.port is not None)

    def node(self, node_id: int) -> ClusterNode:
        """The node with this id (as metadata names leaders and coordinators)."""
        if not 1 <= node_id <= len(self.nodes):
            raise BrokerError(f"no node {node_id} in a cluster of {len(self.nodes)}")
        return self.nodes[node_id - 1]

    def start(self, timeout: float = 120) -> str:
        """Format fresh storage on the controller and every broker, start them together, return
        the bootstrap once every broker is registered with the cluster."""
        jars = ensure_jars()
        *client_ports, controller_port = free_ports(self.size + 1)
        identity = cluster_id()
        private_dir(self.state_dir)
        self.controller.stop()  # one left from an earlier run of this state directory
        self.controller.port = controller_port
        properties = render_controller_properties(
            self.size, controller_port, self.controller.data_dir
        )
        prepare(self.controller, properties)
        self.nodes = []
        for node_id in range(1, self.size + 1):
            node = ClusterNode(self.state_dir / f"node-{node_id}", node_id, None)
            node.stop()
            node.port = client_ports[node_id - 1]
            prepare(
                node,
                render_broker_properties(node_id, client_ports, controller_port, node.data_dir),
            )
            self.nodes.append(node)
        everyone = [self.controller, *self.nodes]
        java = self.controller._java_command(jars)  # the storage tool's: the smallest heap
        started = time.monotonic()
        with ThreadPoolExecutor(len(everyone)) as pool:
            list(pool.map(lambda node: format_storage(java, node, identity), everyone))
            # Together: a broker starting first waits for the controller anyway.
            launched = pool.map(lambda node: node.restart(timeout), everyone)
            try:
                list(launched)
            except BrokerError:
                self.stop()
                raise
        self.wait_registered(timeout)
        elapsed = time.monotonic() - started
        say(
            f"{self.size}-broker cluster ready at {self.bootstrap} in {elapsed:.1f}s "
            f"(controller {self.controller.bootstrap})"
        )
        return self.bootstrap

    def wait_registered(self, timeout: float = 60) -> None:
        """Return once every node's metadata lists all nodes as live brokers."""
        if not asyncio.run(_all_registered(self.bootstrap, self.size, timeout)):
            raise BrokerError(f"not every node of {self.bootstrap} registered in {timeout:.0f}s")

    def kill(self, node_id: int, sig: signal.Signals = signal.SIGKILL) -> None:
        """End one node with `sig` (default SIGKILL) and wait until it is gone; keep its data."""
        self.node(node_id).kill(sig)

    def stop_node(self, node_id: int) -> None:
        """Stop one node cleanly (SIGTERM: it hands its leaderships over first); keep its data."""
        self.kill(node_id, signal.SIGTERM)

    def restart(self, node_id: int, timeout: float = 90) -> None:
        """Start a killed or stopped node again on its storage and port."""
        self.node(node_id).restart(timeout)

    def running(self) -> list[int]:
        """Ids of the brokers whose process is alive."""
        return [node.node_id for node in self.nodes if node.recorded_pid() is not None]

    async def leader(self, topic: str, partition: int) -> int:
        """The id of the node leading `topic`'s `partition` now (-1: none)."""
        return (await self.partitions(topic))[partition][0]

    async def partitions(self, topic: str, seconds: float = 30) -> dict[int, tuple[int, list[int]]]:
        """Partition to (leader id, in-sync replica ids) for `topic`, as metadata says now.

        A request the admin client sent to a node that just died fails: asked again (of
        another node) for `seconds`.
        """
        deadline = time.monotonic() + seconds
        while True:
            try:
                async with admin_client(KafkaSettings(bootstrap_servers=self.bootstrap)) as admin:
                    (described,) = await admin.describe_topics([topic])
                if described["error_code"] == 0:
                    partitions = described["partitions"]
                    return {p["partition"]: (p["leader"], sorted(p["isr"])) for p in partitions}
                failure = f"error {described['error_code']}"
            except (KafkaError, OSError) as exc:
                failure = repr(exc)
            if time.monotonic() > deadline:
                raise BrokerError(f"no metadata for topic {topic} in {seconds:.0f}s: {failure}")
            await asyncio.sleep(0.2)

    async def coordinator(self, group: str, seconds: float = 30) -> int:
        """The id of the node coordinating consumer group `group` now.

        Asked while ``__consumer_offsets`` is being created or its leader moves, or of a node
        that just died, the answer is an error: asked again (anew) for `seconds`.
        """
        deadline = time.monotonic() + seconds
        while True:
            try:
                async with admin_client(KafkaSettings(bootstrap_servers=self.bootstrap)) as admin:
                    node: int = await admin.find_coordinator(group)
                    return node
            except (KafkaError, OSError):
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)

    async def wait_in_sync(self, topics: list[str], seconds: float = 60) -> None:
        """Return once every partition of `topics` has every node in its ISR (the cluster has
        recovered from a node's absence), raising BrokerError after `seconds`."""
        everyone = list(range(1, len(self.nodes) + 1))
        deadline = time.monotonic() + seconds
        while True:
            states = [await self.partitions(topic, seconds) for topic in topics]
            if all(isr == everyone for state in states for _, isr in state.values()):
                return
            if time.monotonic() > deadline:
                raise BrokerError(f"{topics} not fully in sync after {seconds:.0f}s")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        """Kill every broker, then the controller, and delete their data.

        SIGKILL, not SIGTERM: nothing is kept to shut down cleanly for, and a clean shutdown
        takes seconds per broker.
        """
        for node in [*self.nodes, self.controller]:
            node.kill()
            node.stop()

    @classmethod
    def recorded(cls, state_dir: Path) -> LocalCluster:
        """The cluster an earlier `start` left in `state_dir` (ports read from its nodes)."""
        size = len(list(state_dir.glob("node-*")))
        cluster = cls(state_dir, max(size, 1))
        for node_id in range(1, size + 1):
            node = ClusterNode(cluster.state_dir / f"node-{node_id}", node_id, None)
            node.recorded_pid()  # reads the recorded port
            cluster.nodes.append(node)
        cluster.controller.recorded_pid()
        return cluster

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def _all_registered(bootstrap: str, size: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)  # a node still starting refuses connections
    try:
        while time.monotonic() < deadline:
            if await registered_brokers(KafkaSettings(bootstrap_servers=bootstrap), 5.0) == size:
                return True
            await asyncio.sleep(0.2)
        return False
    finally:
        aiokafka_log.setLevel(level)
