"""Ports on 127.0.0.1 for the dev broker's listeners: the settings' default, free ones, taken."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable

DEFAULT_PORT = 9092
"""The plain listener's port unless told otherwise: the settings' default bootstrap address."""


def free_port() -> int:
    """A port the OS considers free right now on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int, taken: Iterable[int | None] = ()) -> list[int]:
    """`count` distinct free ports, none of them in `taken`.

    Sockets are held open together: closed one by one, the OS may hand the same port out twice
    (seen as a broker refusing "two listeners on the same port").
    """
    with contextlib.ExitStack() as held:
        ports: list[int] = []
        avoid = set(taken)
        while len(ports) < count:
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            if port not in avoid:
                ports.append(port)
                avoid.add(port)
        return ports


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the JVM does, so a lingering TIME_WAIT socket from a previous broker is no conflict.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
