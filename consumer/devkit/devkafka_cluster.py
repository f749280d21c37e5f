"""A local replicated Apache Kafka: N KRaft nodes on loopback, each broker and controller.

Production clusters run three or more brokers, replication factor 3 and ``min.insync.replicas``
2, and lose brokers; this cluster is configured the same way, internal topics included, so
drills can kill a partition's leader or the group's coordinator and see what a worker does.

    python -m consumer.devkit.devkafka up --nodes 3

Every node is a `LocalBroker` (same jars, same process handling) with its own state directory
``node-<id>`` under the cluster's; `kill`, `stop_node` and `restart` act on one node by id.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from consumer.devkit import devkafka
from consumer.devkit.devkafka import BrokerError, LocalBroker, free_ports
from consumer.devkit.private import private_dir, write_private
from consumer.engine.admin import admin_client

# Three JVMs share two cores here: a smaller heap each than the single broker's, and C1 only
# (TieredStopAtLevel=1): on the loaded 2-core machine it halved a node's start (10 s, not 20-28;
# the cluster's 18-26 s, not 55-57). No benchmark runs on the cluster for C2 to matter.
NODE_JVM_FLAGS = [
    "-Xms128m",
    "-Xmx320m",
    "-XX:+UseSerialGC",
    "-XX:-UsePerfData",
    "-XX:TieredStopAtLevel=1",
]
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2


def render_node_properties(
    node_id: int, ports: list[int], controller_ports: list[int], data_dir: Path
) -> str:
    """server.properties of node `node_id` (1-based) of a cluster whose nodes listen on `ports`."""
    voters = ",".join(f"{n}@127.0.0.1:{p}" for n, p in enumerate(controller_ports, 1))
    port, controller_port = ports[node_id - 1], controller_ports[node_id - 1]
    replicas = min(REPLICATION_FACTOR, len(ports))
    min_isr = min(MIN_INSYNC_REPLICAS, replicas)
    return f"""process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}
default.replication.factor={replicas}
min.insync.replicas={min_isr}
unclean.leader.election.enable=false
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=5
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_isr}
group.initial.rebalance.delay.ms=0
# A killed node is fenced (and dropped from every ISR) after 6 s instead of 9 s.
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
"""


def cluster_id() -> str:
    """A random cluster id as ``StorageTool random-uuid`` prints it, without starting a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids these too: they read as a CLI option
            return text


class ClusterNode(LocalBroker):
    """One node of a `LocalCluster`; its config names the whole quorum."""

    def __init__(self, state_dir: Path, node_id: int, port: int | None) -> None:
        super().__init__(state_dir, port)
        self.node_id = node_id

    def _java_command(self, jars: Path) -> list[str]:
        log4j = self.state_dir / "log4j2.properties"
        java = devkafka._java()
        return [java, *NODE_JVM_FLAGS, f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{jars}/*"]


class LocalCluster:
    """`nodes` KRaft nodes whose state lives in ``state_dir/node-<id>``; node ids start at 1."""

    def __init__(self, state_dir: Path, nodes: int = 3) -> None:
        if nodes < 1:
            raise BrokerError(f"a cluster needs at least one node, not {nodes}")
        self.state_dir = state_dir.absolute()
        self.size = nodes
        self.nodes: list[ClusterNode] = []

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
        """Format fresh storage on every node, start them together, return the bootstrap once
        every node is registered with the cluster."""
        jars = devkafka.ensure_jars()
        ports = free_ports(2 * self.size)
        client_ports, controller_ports = ports[: self.size], ports[self.size :]
        identity = cluster_id()
        private_dir(self.state_dir)
        self.nodes = []
        for node_id in range(1, self.size + 1):
            node = ClusterNode(self.state_dir / f"node-{node_id}", node_id, None)
            node.stop()  # one left from an earlier run of this state directory
            node.port = client_ports[node_id - 1]
            private_dir(node.state_dir)
            write_private(node.state_dir / "log4j2.properties", devkafka.LOG4J2)
            properties = render_node_properties(
                node_id, client_ports, controller_ports, node.data_dir
            )
            write_private(node.config_file, properties)
            self.nodes.append(node)
        java = self.nodes[0]._java_command(jars)
        started = time.monotonic()
        with ThreadPoolExecutor(self.size) as pool:
            list(pool.map(lambda node: _format(java, node, identity), self.nodes))
            # Together: no node can serve before a majority of the quorum runs.
            launched = pool.map(lambda node: node.restart(timeout), self.nodes)
            try:
                list(launched)
            except BrokerError:
                self.stop()
                raise
        self.wait_registered(timeout)
        elapsed = time.monotonic() - started
        devkafka._say(f"{self.size}-node cluster ready at {self.bootstrap} in {elapsed:.1f}s")
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
        """Ids of the nodes whose process is alive."""
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
                async with admin_client(self.bootstrap) as admin:
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
                async with admin_client(self.bootstrap) as admin:
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
        """Kill every node and delete their data.

        SIGKILL, not SIGTERM: a node's clean shutdown waits for a controller quorum the nodes
        stopped before it no longer form (seen: 20 s each), and the data goes anyway.
        """
        for node in self.nodes:
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


def cluster_home() -> Path:
    """Where the long-lived cluster of ``up --nodes N`` keeps its nodes."""
    return devkafka.devkafka_home() / "cluster"


def up(nodes: int) -> str:
    """Ensure the long-lived `nodes`-node cluster is serving; return its bootstrap."""
    home = cluster_home()
    with devkafka._locked(home / ".lock"):
        cluster = LocalCluster.recorded(home)
        if len(cluster.nodes) == nodes and len(cluster.running()) == nodes:
            try:
                cluster.wait_registered(5)
                return cluster.bootstrap
            except BrokerError:
                pass  # alive but not serving: hung; start afresh
        cluster.stop()
        for stale in home.glob("node-*"):
            shutil.rmtree(stale)
        return LocalCluster(home, nodes).start()


def command(name: str, nodes: int) -> int:
    """`up`, `down`, `status` or `bootstrap` of ``python -m consumer.devkit.devkafka`` for the
    long-lived cluster (``--nodes N`` above 1); returns the exit status."""
    if name == "up" or (name == "bootstrap" and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS")):
        print(up(nodes))
        return 0
    if name == "bootstrap":
        print(os.environ["KAFKA_BOOTSTRAP_SERVERS"])
        return 0
    home = cluster_home()
    with devkafka._locked(home / ".lock"):
        cluster = LocalCluster.recorded(home)
        running = cluster.running()
        if name == "down":
            cluster.stop()
            devkafka._say(f"stopped nodes {running}" if running else "not running")
        elif running:
            print(f"running {cluster.bootstrap} (nodes {running} of {len(cluster.nodes)})")
        else:
            print("stopped")
    return 0


def _format(java: list[str], node: ClusterNode, identity: str) -> None:
    argfile = node.state_dir / "storage-tool.args"
    devkafka._storage_tool(java, argfile, "format", "-t", identity, "-c", str(node.config_file))


async def _all_registered(bootstrap: str, size: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)  # a node still starting refuses connections
    try:
        while time.monotonic() < deadline:
            client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
            try:
                await client.bootstrap()
                if len(client.cluster.brokers()) == size:
                    return True
            except (TimeoutError, KafkaError, OSError):
                pass
            finally:
                await client.close()
            await asyncio.sleep(0.2)
        return False
    finally:
        aiokafka_log.setLevel(level)
