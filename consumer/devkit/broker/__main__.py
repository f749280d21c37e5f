"""The ``python -m consumer.devkit.broker`` command line: ``up``, ``down``, ``status`` and
``bootstrap`` for the long-lived broker (``--secured``) or replicated cluster (``--nodes N``)."""

from __future__ import annotations

import argparse
import os
import sys

from consumer.devkit.broker import ports
from consumer.devkit.broker.cluster import LocalCluster
from consumer.devkit.broker.home import BrokerError, locked, say
from consumer.devkit.broker.long_lived import (
    bootstrap_servers,
    cluster_home,
    cluster_up,
    down,
    run_broker,
    up,
)


def main(argv: list[str] | None = None) -> int:
    """The ``python -m consumer.devkit.broker`` command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m consumer.devkit.broker",
        description="A local Apache Kafka broker for development, from Maven Central's jars.",
    )
    secured = argparse.ArgumentParser(add_help=False)
    secured.add_argument(
        "--secured",
        action="store_true",
        help="the broker with SASL_SSL (SCRAM-SHA-512, PLAIN) and mutual-TLS SSL listeners",
    )
    secured.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="above 1: the long-lived replicated cluster of that many brokers and a controller "
        "(RF 3, min.insync.replicas 2), kept apart from the single broker "
        "(see consumer.devkit.broker.cluster)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up_command = sub.add_parser(
        "up",
        parents=[secured],
        help="start the long-lived broker unless it is running; print its address",
        description="Start the long-lived broker unless it is running, then print its address. "
        f"It listens on 127.0.0.1:{ports.DEFAULT_PORT} (the settings' default) unless --port says "
        "otherwise; a taken port is an error, never a silent switch.",
    )
    up_command.add_argument(
        "--port", type=int, help=f"the plain listener's port (default {ports.DEFAULT_PORT})"
    )
    sub.add_parser(
        "down",
        parents=[secured],
        help="stop the long-lived broker; returns once its process has exited",
    )
    sub.add_parser(
        "status", parents=[secured], help="print 'running <address> (pid N)' or 'stopped'"
    )
    sub.add_parser(
        "bootstrap",
        parents=[secured],
        help="print the address clients should use: $KAFKA_BOOTSTRAP_SERVERS if set, else the "
        "long-lived broker's (started first if it is not running)",
    )
    args = parser.parse_args(argv)
    command, is_secured = args.command, args.secured
    try:
        if args.nodes > 1:
            if is_secured or getattr(args, "port", None) is not None:
                raise BrokerError("--nodes takes neither --secured nor --port")
            return _cluster_command(command, args.nodes)
        if command == "up" or (command == "bootstrap" and is_secured):
            print(up(is_secured, getattr(args, "port", None)))
        elif command == "bootstrap":
            print(bootstrap_servers())
        elif command == "down":
            pid = down(is_secured)
            say("not running" if pid is None else f"stopped (pid {pid} exited)")
        else:
            broker = run_broker(is_secured)
            pid = broker.recorded_pid()
            if pid is None:
                print("stopped")
            else:
                address = broker.security.sasl_ssl if is_secured else broker.bootstrap
                print(f"running {address} (pid {pid})")
    except BrokerError as err:
        say(str(err))
        return 1
    return 0


def _cluster_command(name: str, nodes: int) -> int:
    """`up`, `down`, `status` or `bootstrap` of ``python -m consumer.devkit.broker`` for the
    long-lived cluster (``--nodes N`` above 1); returns the exit status."""
    if name == "up" or (name == "bootstrap" and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS")):
        print(cluster_up(nodes))
        return 0
    if name == "bootstrap":
        print(os.environ["KAFKA_BOOTSTRAP_SERVERS"])
        return 0
    home = cluster_home()
    with locked(home / ".lock"):
        cluster = LocalCluster.recorded(home)
        running = cluster.running()
        controller = cluster.controller.recorded_pid() is not None
        if name == "down":
            cluster.stop()
            gone = f"brokers {running}" + (" and the controller" if controller else "")
            say(f"stopped {gone}" if running or controller else "not running")
        elif running or controller:
            state = "running" if controller else "NOT running"
            print(
                f"running {cluster.bootstrap} (brokers {running} of {len(cluster.nodes)}, "
                f"controller {state})"
            )
        else:
            print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
