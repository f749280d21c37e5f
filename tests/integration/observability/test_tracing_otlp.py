"""`recording-consumer run` configured only by OTEL_* variables exports its spans over
OTLP/HTTP to a real receiver on loopback (an aiohttp server decoding opentelemetry-proto)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from consumer.devkit.broker import free_port
from tests._support.ingress import AUTH, callback, start_ingress, stop, wait_serving
from tests._support.kafka_helpers import exit_status, read_topic, recording_message, worker_process

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """An OTLP/HTTP trace receiver: (its endpoint, the export requests it got)."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        received.append(ExportTraceServiceRequest.FromString(await request.read()))
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", received
    await runner.cleanup()


async def test_worker_exports_spans_over_otlp_http(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    receiver: tuple[str, list[ExportTraceServiceRequest]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three messages, one with a traceparent: the receiver gets three consumer spans and
    three handler spans from service `recording-consumer`, the traceparent's trace among them,
    and the worker's JSON `message` lines carry the same trace ids."""
    endpoint, received = receiver
    await create_topic(kafka_bootstrap, unique_name)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for n in range(3):
            key, value = recording_message(f"r-{n}")
            headers = [("traceparent", TRACEPARENT.encode())] if n == 0 else []
            await producer.send_and_wait(unique_name, value, key=key, headers=headers)
    finally:
        await producer.stop()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    handled = tmp_path / "handled"
    worker = worker_process(kafka_bootstrap, unique_name, handled, until_idle=1.0)
    assert await exit_status(worker) == 0

    spans: list[tuple[dict[str, Any], Any]] = []
    for request in received:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            spans += [(resource, s) for scope in resource_spans.scope_spans for s in scope.spans]
    assert {resource["service.name"] for resource, _ in spans} == {"recording-consumer"}
    consumers = [s for _, s in spans if s.name == f"process {unique_name}"]
    attempts = [s for _, s in spans if s.name == "handle append"]
    assert len(consumers) == len(attempts) == 3
    assert {a.parent_span_id for a in attempts} == {c.span_id for c in consumers}
    traces = {c.trace_id.hex() for c in consumers}
    assert TRACE_ID in traces
    log = handled.with_name(handled.name + ".log").read_text().splitlines()
    lines = [json.loads(line) for line in log if line.startswith("{")]
    logged = {line["trace_id"] for line in lines if line.get("outcome") == "handled"}
    assert logged == traces


async def test_ingress_starts_the_trace_and_puts_traceparent_on_the_record(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    receiver: tuple[str, list[ExportTraceServiceRequest]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`ingest` with OTEL_* set: a callback posted with a traceparent gets a server span that is
    the caller's child, one posted without starts a trace; each record on the topic carries a
    traceparent naming its request's span, and the receiver has both spans."""
    endpoint, received = receiver
    await create_topic(kafka_bootstrap, unique_name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    ingress = start_ingress(kafka_bootstrap, unique_name, tmp_path)
    try:
        await wait_serving(ingress)
        async with httpx.AsyncClient(auth=AUTH, timeout=30) as client:
            joined = await client.post(
                ingress.url, content=callback("r-joined"), headers={"traceparent": TRACEPARENT}
            )
            started = await client.post(ingress.url, content=callback("r-started"))
        assert (joined.status_code, started.status_code) == (200, 200)
        assert await stop(ingress) == 0
    finally:
        ingress.kill()

    records = {r.key: dict(r.headers) for r in await read_topic(kafka_bootstrap, unique_name)}
    spans = [
        span
        for request in received
        for resource_spans in request.resource_spans
        for scope in resource_spans.scope_spans
        for span in scope.spans
        if span.name == "POST /callbacks"
    ]
    by_trace = {span.trace_id.hex(): span for span in spans}
    assert len(spans) == 2
    joined_parent = records[b"r-joined"]["traceparent"].decode().split("-")
    assert joined_parent[1] == TRACE_ID
    assert by_trace[TRACE_ID].parent_span_id.hex() == "b7ad6b7169203331"
    assert by_trace[TRACE_ID].span_id.hex() == joined_parent[2]
    started_parent = records[b"r-started"]["traceparent"].decode().split("-")
    assert started_parent[1] != TRACE_ID
    assert by_trace[started_parent[1]].span_id.hex() == started_parent[2]
    assert not by_trace[started_parent[1]].parent_span_id
