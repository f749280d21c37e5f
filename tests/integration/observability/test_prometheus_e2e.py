"""The alert rules and the dashboard against a real Prometheus scraping a running worker.

Debian's `prometheus` server runs on a free loopback port with its own configuration and data
directory, scraping the worker's /metrics every second and loading deploy/prometheus's rules.
The ingress's panels are queried against a stand-in exposition of the metric names and types
the ingress publishes (the ingress itself is not run here); its alerts are covered by
tests/integration/observability/test_alert_rules.py.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from consumer.cli.produce import produce
from consumer.devkit.broker import free_port
from consumer.handler_api import Handler
from tests._support.alert_rules import RULES, alert_rules
from tests._support.kafka_helpers import REPO, recording_message
from tests._support.observed import Broken, Gate, observed, observed_settings, routed, serving

DASHBOARD = REPO / "deploy" / "grafana" / "recording-consumer.json"


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the dashboard."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


@contextmanager
def ingress_stand_in() -> Iterator[str]:
    """A /metrics with the ingress's metric names and types, one event of each kind counted."""
    registry = CollectorRegistry()
    prefix = "recording_consumer_ingress_"
    Counter(prefix + "requests", "", ["code"], registry=registry).labels("202").inc()
    Histogram(prefix + "request_duration_seconds", "", registry=registry).observe(0.01)
    Counter(prefix + "produced", "", registry=registry).inc()
    Counter(prefix + "spooled", "", registry=registry).inc()
    Gauge(prefix + "spool_messages", "", registry=registry).set(1)
    Gauge(prefix + "spool_bytes", "", registry=registry).set(512)
    Counter(prefix + "refusals", "", ["reason"], registry=registry).labels("spool_full").inc()
    Gauge(prefix + "kafka_up", "", registry=registry).set(1)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@asynccontextmanager
async def prometheus(tmp_path: Path, worker: str, ingress: str) -> AsyncIterator[httpx.AsyncClient]:
    """A Prometheus server scraping `worker` and `ingress` every second with the rules loaded;
    a client for its HTTP API once it is ready."""
    server = shutil.which("prometheus")
    assert server, "prometheus not found: install Debian's `prometheus` package (.ci/run does)"
    scrape = {"scrape_interval": "1s", "scrape_timeout": "1s"}
    config = {
        "global": {"evaluation_interval": "1s", **scrape},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "worker", "static_configs": [{"targets": [worker]}]},
            {"job_name": "ingress", "static_configs": [{"targets": [ingress]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    listen = f"127.0.0.1:{free_port()}"
    log = (tmp_path / "prometheus.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        server,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address={listen}",
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://{listen}", timeout=10) as client:
            await until(lambda: _ready(client, process), lambda: "Prometheus never became ready")
            yield client
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        log.close()


async def _ready(client: httpx.AsyncClient, process: asyncio.subprocess.Process) -> bool:
    assert process.returncode is None, (
        "Prometheus exited; see prometheus.log in the test's tmp_path"
    )
    try:
        return (await client.get("/-/ready")).status_code == 200
    except httpx.TransportError:
        return False


async def query(client: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    """The instant vector `expr` evaluates to now; fails on a PromQL error."""
    response = await client.get("/api/v1/query", params={"query": expr})
    body = response.json()
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def until(
    check: Callable[[], Awaitable[bool]], failure: Callable[[], str], seconds: float = 60
) -> None:
    """Poll `check` until it is true; after `seconds`, fail with what `failure` says then."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, failure()
        await asyncio.sleep(0.5)


async def test_lag_alert_and_dashboard_against_a_real_prometheus(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """Prometheus loads every rule; while a handler holds a message and more arrive, the lag
    alert's expression (as the rules file has it) becomes true for the worker's topic; after a
    retried-then-dead-lettered message and the release, every dashboard query returns data."""
    await create_topic(kafka_bootstrap, unique_name)
    settings = observed_settings(kafka_bootstrap, unique_name)
    settings = routed(settings, {"partial": ["broken"], "default": ["gate"]})
    gate = Gate()
    handlers: dict[str, Handler] = {"gate": gate, "broken": Broken()}
    worker, observers = observed(settings, handlers)
    rules = alert_rules()
    with ingress_stand_in() as ingress:
        async with (
            serving(worker, observers) as (client, _),
            prometheus(tmp_path, settings.observability.listen, ingress) as api,
        ):
            health: dict[str, str] = {}

            async def rules_evaluated() -> bool:
                groups = (await api.get("/api/v1/rules")).json()["data"]["groups"]
                health.update({r["name"]: r["health"] for g in groups for r in g["rules"]})
                return "unknown" not in health.values()

            await until(rules_evaluated, lambda: f"rules never evaluated: {health}")
            assert health == dict.fromkeys(rules, "ok")

            await produce(settings.kafka, unique_name, [recording_message("r-held")])
            await asyncio.wait_for(gate.entered.wait(), 30)
            await produce(settings.kafka, unique_name, [recording_message("r-broken", "partial")])
            lag_growing = rules["RecordingConsumerLagGrowing"]["expr"]
            sent = 0

            async def lag_alert_true() -> bool:
                nonlocal sent
                sent += 1
                await produce(settings.kafka, unique_name, [recording_message(f"r-{sent}")])
                return bool(await query(api, lag_growing))

            await until(lag_alert_true, lambda: "the lag alert's expression never became true")
            (alert,) = await query(api, lag_growing)
            assert alert["metric"] == {"job": "worker", "topic": unique_name}

            gate.release.set()
            missing: list[tuple[str, str]] = []

            async def every_query_has_data() -> bool:
                missing[:] = [(t, e) for t, e in dashboard_queries() if not await query(api, e)]
                return not missing

            await until(every_query_has_data, lambda: f"dashboard queries without data: {missing}")
            samples = await query(api, "recording_consumer_dead_letters_total")
            assert [s["value"][1] for s in samples] == ["1"]
            assert (await client.get("/readyz")).status_code == 200
