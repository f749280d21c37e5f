"""`recording-consumer run` configured only by OTEL_* variables exports its spans over
OTLP/HTTP to a real receiver on loopback (an aiohttp server decoding opentelemetry-proto)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from consumer.devkit.devkafka import free_port
from tests.support import exit_status, recording_message, worker_process

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
