"""The HTTP endpoint: /metrics, /healthz and /readyz, served from the process's own event loop.

On the project's one HTTP server (`consumer.observability.serving`), with limits for an endpoint
anyone on the network may reach: a few connections (probes and a scraper need no more), and one
deadline for a whole request, reading and writing. The worker and the ingress both serve it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import msgspec
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from consumer.observability import serving
from consumer.observability.metrics import registry_for
from consumer.observability.observers import Observers
from consumer.observability.view import WorkerView

LIMITS = serving.Limits(
    max_connections=32, header_timeout=5.0, keep_alive_timeout=5.0, request_timeout=5.0
)
KEY = "observability.listen"
_JSON = "application/json"


def listen_address(listen: str) -> tuple[str, int] | None:
    """``host:port`` as a pair, or None when the endpoint is off; ConfigError when malformed."""
    return serving.listen_address(listen, KEY)


class Probes(msgspec.Struct, frozen=True):
    """What the endpoint reports: a metrics registry, and why the process is not live or ready."""

    registry: CollectorRegistry
    liveness_failures: Callable[[], list[str]]
    unready: Callable[[], list[str]]


@contextlib.asynccontextmanager
async def endpoint(
    worker: WorkerView, observers: Observers
) -> AsyncIterator[serving.Listener | None]:
    """Serve the endpoint of `worker`, observed by `observers`, while the block runs, if
    ``observability.listen`` is set."""
    health = observers.health
    probes = Probes(
        registry_for(worker, health, observers.durations), health.liveness_failures, health.unready
    )
    async with probe_endpoint(worker.settings.observability.listen, probes) as listener:
        yield listener


@contextlib.asynccontextmanager
async def probe_endpoint(listen: str, probes: Probes) -> AsyncIterator[serving.Listener | None]:
    """Serve `probes` on `listen` while the block runs; nothing when `listen` is empty."""
    if listen_address(listen) is None:
        yield None
        return
    async with serving.serve(_Routes(probes).answer, listen, LIMITS, key=KEY) as listener:
        structlog.get_logger("consumer.observability").info(
            "serving /metrics, /healthz, /readyz", listen=listen
        )
        yield listener


class _Routes:
    def __init__(self, probes: Probes) -> None:
        self._probes = probes

    async def answer(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="GET only\n", headers={"Allow": "GET, HEAD"})
        path = request.path
        if path == "/metrics":
            body = generate_latest(self._probes.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
        if path == "/healthz":
            return _verdict(self._probes.liveness_failures())
        if path == "/readyz":
            return _verdict(self._probes.unready())
        return web.Response(status=404, text="not found: try /metrics, /healthz or /readyz\n")


def _verdict(problems: list[str]) -> web.Response:
    body = {"status": "fail", "problems": problems} if problems else {"status": "ok"}
    return web.Response(
        status=503 if problems else 200,
        body=msgspec.json.encode(body) + b"\n",
        content_type=_JSON,
    )
