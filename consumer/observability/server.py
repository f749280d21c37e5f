"""The HTTP endpoint: /metrics, /healthz and /readyz, served from the worker's own event loop.

A few lines of HTTP/1.1 over `asyncio.start_server`, one request per connection: probes and
Prometheus need nothing more, and a web framework would be the largest dependency we have.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import msgspec
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumer.errors import ConfigError
from consumer.observability.metrics import registry_for

if TYPE_CHECKING:
    from consumer.engine.worker import Worker

READ_TIMEOUT = 5.0
MAX_HEADER_LINES = 100
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
_JSON = "application/json"


def listen_address(listen: str) -> tuple[str, int] | None:
    """``host:port`` as a pair, or None when the endpoint is off; ConfigError when malformed."""
    if not listen:
        return None
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f'observability.listen: expected "host:port" or "", got {listen!r}',
            "observability.listen",
        )
    return host.strip("[]") or "0.0.0.0", int(port)


@contextlib.asynccontextmanager
async def endpoint(worker: Worker) -> AsyncIterator[asyncio.Server | None]:
    """Serve the worker's endpoint while the block runs, if ``observability.listen`` is set."""
    listen = worker.settings.observability.listen
    address = listen_address(listen)
    if address is None:
        yield None
        return
    routes = _Routes(worker)
    try:
        server = await asyncio.start_server(routes.serve, *address)
    except OSError as exc:
        raise ConfigError(
            f"observability.listen: cannot listen on {listen}: {exc.strerror or exc}",
            "observability.listen",
        ) from None
    structlog.get_logger("consumer.observability").info(
        "serving /metrics, /healthz, /readyz", listen=listen
    )
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


class _Routes:
    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._registry = registry_for(worker)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                request = await reader.readline()
                for _ in range(MAX_HEADER_LINES):
                    if (await reader.readline()).strip() == b"":
                        break
            method, target, _ = request.decode("latin-1").split(" ", 2)
            status, content_type, body = self._answer(method, target.split("?", 1)[0])
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, ValueError, ConnectionError):
            pass  # a malformed or abandoned request gets no answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"GET only\n"
        health = self._worker.health
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            return _verdict(health.problems())
        if path == "/readyz":
            return _verdict(health.unready())
        return 404, "text/plain", b"not found: try /metrics, /healthz or /readyz\n"


def _verdict(problems: list[str]) -> tuple[int, str, bytes]:
    body = {"status": "fail", "problems": problems} if problems else {"status": "ok"}
    return (503 if problems else 200), _JSON, msgspec.json.encode(body) + b"\n"
