"""A ``host:port`` to listen on, as the settings give it: the one parser."""

from __future__ import annotations


def listen_address(listen: str) -> tuple[str, int] | None:
    """``host:port`` (``[IPv6]:port``; no host means every interface) as a pair, or None when
    `listen` is empty; ValueError when it is neither."""
    if not listen:
        return None
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f'expected "host:port", got {listen!r}')
    return host.strip("[]") or "0.0.0.0", int(port)
