"""The long-lived brokers of ``make kafka-up``, in ``$DEVKAFKA_HOME/run`` (plain) and
``$DEVKAFKA_HOME/secured``: started unless they serve already, stopped, and their address."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from consumer.devkit.broker.cluster import LocalCluster
from consumer.devkit.broker.home import BrokerError, devkafka_home, locked, say
from consumer.devkit.broker.process import LocalBroker
from consumer.devkit.broker.security import PLAIN_USER, SCRAM_USER, Security


def run_broker(secured: bool = False, port: int | None = None) -> LocalBroker:
    if secured:
        return LocalBroker(devkafka_home() / "secured", port, secured=True)
    return LocalBroker(devkafka_home() / "run", port)


def up(secured: bool = False, port: int | None = None) -> str:
    """Ensure the long-lived broker in ``$DEVKAFKA_HOME/run`` is serving; return its bootstrap.

    `secured`: the one in ``$DEVKAFKA_HOME/secured``, and its SASL_SSL listener's address.
    `port`: the plain listener's port when it has to be started (default 9092, never another).
    """
    broker = run_broker(secured, port)
    with locked(broker.state_dir / ".lock"):
        if not broker.answers():
            broker.stop()  # a recorded broker that is alive but silent is hung; start afresh
            broker.start()
        if secured:
            report_security(broker.security)
            return broker.security.sasl_ssl
        return broker.bootstrap


def report_security(security: Security) -> None:
    """Tell the user (on stderr) where the secured listeners and their credentials are."""
    tls = security.tls_dir
    users = f"{SCRAM_USER} (SCRAM-SHA-512), {PLAIN_USER} (PLAIN)"
    say(f"SASL_SSL {security.sasl_ssl}: users {users}; passwords in {tls}/<user>.password")
    say(f"SSL {security.ssl}: client certificate {security.certfile}, key {security.keyfile}")
    say(f"CA certificate: {security.cafile}")


def down(secured: bool = False) -> int | None:
    """Stop the long-lived broker, if one is running; return its pid once it has exited."""
    broker = run_broker(secured)
    with locked(broker.state_dir / ".lock"):
        return broker.stop()


def bootstrap_servers() -> str:
    """``$KAFKA_BOOTSTRAP_SERVERS`` if set, else the long-lived local broker's (started if needed).

    Synchronous (it may run an event loop): call it before, not inside, a running asyncio loop.
    """
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or up()


def cluster_home() -> Path:
    """Where the long-lived cluster of ``up --nodes N`` keeps its nodes."""
    return devkafka_home() / "cluster"


def cluster_up(nodes: int) -> str:
    """Ensure the long-lived `nodes`-node cluster is serving; return its bootstrap."""
    home = cluster_home()
    with locked(home / ".lock"):
        cluster = LocalCluster.recorded(home)
        serving = cluster.controller.recorded_pid() is not None
        if serving and len(cluster.nodes) == nodes and len(cluster.running()) == nodes:
            try:
                cluster.wait_registered(5)
                return cluster.bootstrap
            except BrokerError:
                pass  # alive but not serving: hung; start afresh
        cluster.stop()
        for stale in [*home.glob("node-*"), cluster.controller.state_dir]:
            shutil.rmtree(stale, ignore_errors=True)
        return LocalCluster(home, nodes).start()
