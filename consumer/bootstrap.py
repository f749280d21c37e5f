"""``kafka.bootstrap_servers`` as the addresses a Kafka client connects to: the one parser.

Read as aiokafka reads it, so a probe reaches what the client would: comma-separated
``host:port``, ``[IPv6]:port``; a host, or a bare IPv6 address, without a port means 9092.
"""

from __future__ import annotations

import ipaddress

DEFAULT_PORT = 9092


def bootstrap_addresses(servers: str) -> list[tuple[str, int]]:
    """(host, port) per entry of `servers`, in order; empty entries are skipped. Raises
    ValueError naming the entry without a host or whose port is not a number."""
    return [_address(entry.strip()) for entry in servers.split(",") if entry.strip()]


def _address(entry: str) -> tuple[str, int]:
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if host and bracket and (not rest or rest.startswith(":")):
            return host, _port(entry, rest[1:] if rest else None)
        raise ValueError(f"not host:port: {entry!r}")
    if ":" not in entry or _is_ipv6(entry):
        return entry, DEFAULT_PORT
    host, _, port = entry.rpartition(":")
    if not host or "/" in host:  # a scheme (SASL_SSL://b-1:9096) the client would not strip
        raise ValueError(f"not host:port: {entry!r}")
    return host, _port(entry, port)


def _port(entry: str, port: str | None) -> int:
    if port is None:
        return DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not host:port: {entry!r}")
    return int(port)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
