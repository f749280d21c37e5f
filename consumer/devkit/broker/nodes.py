"""The processes of a `consumer.devkit.broker.cluster.LocalCluster`: broker-only KRaft nodes
and their one controller, their server.properties and JVM flags."""

from __future__ import annotations

import base64
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from consumer.devkit.broker.jars import java_binary
from consumer.devkit.broker.private import private_dir, write_private
from consumer.devkit.broker.process import LocalBroker
from consumer.devkit.broker.properties import LOG4J2
from consumer.devkit.broker.storage import storage_tool

# Four JVMs share two cores here: smaller heaps than the single broker's (the controller's
# smallest: it holds only the cluster's metadata), and C1 only (TieredStopAtLevel=1): on the
# loaded 2-core machine it halved a node's start. No benchmark runs on the cluster for C2.
JIT_GC_FLAGS = ["-XX:+UseSerialGC", "-XX:-UsePerfData", "-XX:TieredStopAtLevel=1"]
BROKER_HEAP = ["-Xms128m", "-Xmx320m"]
CONTROLLER_HEAP = ["-Xms64m", "-Xmx160m"]
CONTROLLER_ID = 0
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2


def render_broker_properties(
    node_id: int, ports: list[int], controller_port: int, data_dir: Path
) -> str:
    """server.properties of broker `node_id` (1-based) of brokers listening on `ports`."""
    return f"""process.roles=broker
node.id={node_id}
controller.quorum.voters={CONTROLLER_ID}@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{ports[node_id - 1]}
advertised.listeners=PLAINTEXT://127.0.0.1:{ports[node_id - 1]}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}
{_replication_defaults(len(ports))}"""


def render_controller_properties(brokers: int, controller_port: int, data_dir: Path) -> str:
    """server.properties of the controller of `brokers` brokers: the quorum's only voter.

    It takes the replication defaults too: in KRaft the controller places a topic's replicas
    and elects its leaders.
    """
    return f"""process.roles=controller
node.id={CONTROLLER_ID}
controller.quorum.voters={CONTROLLER_ID}@127.0.0.1:{controller_port}
listeners=CONTROLLER://127.0.0.1:{controller_port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT
log.dirs={data_dir}
{_replication_defaults(brokers)}"""


def _replication_defaults(brokers: int) -> str:
    replicas = min(REPLICATION_FACTOR, brokers)
    min_isr = min(MIN_INSYNC_REPLICAS, replicas)
    return f"""default.replication.factor={replicas}
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
    """One broker of a `LocalCluster`; its config names the controller."""

    heap = BROKER_HEAP

    def __init__(self, state_dir: Path, node_id: int, port: int | None) -> None:
        super().__init__(state_dir, port)
        self.node_id = node_id

    def _java_command(self, jars: Path) -> list[str]:
        log4j = self.state_dir / "log4j2.properties"
        flags = [*self.heap, *JIT_GC_FLAGS, f"-Dlog4j2.configurationFile={log4j}"]
        return [java_binary(), *flags, "-cp", f"{jars}/*"]


class ClusterController(ClusterNode):
    """The controller of a `LocalCluster`; `port` is its controller listener's."""

    heap = CONTROLLER_HEAP

    def _serves(self, deadline: float, alive: Callable[[], bool]) -> bool:
        # It serves no metadata to clients: listening is all there is to wait for (the brokers
        # are ready only once it answers them).
        while alive() and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return True
            except OSError:
                time.sleep(0.1)
        return False


def prepare(node: ClusterNode, properties: str) -> None:
    """Write the node's private state directory: its log4j and server.properties."""
    private_dir(node.state_dir)
    write_private(node.state_dir / "log4j2.properties", LOG4J2)
    write_private(node.config_file, properties)


def format_storage(java: list[str], node: ClusterNode, identity: str) -> None:
    """Format the node's storage for the cluster `identity` (one Kafka StorageTool run)."""
    argfile = node.state_dir / "storage-tool.args"
    storage_tool(java, argfile, "format", "-t", identity, "-c", str(node.config_file))
