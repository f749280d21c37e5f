"""The callback app's answers that need no Kafka: a bug is still answered (500, request id,
counted), and refusals a burst left unlogged are logged later, so the counts add up."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import structlog

from consumer.devkit.broker import free_port
from consumer.ingress import metrics
from consumer.ingress.app import CallbackApp
from consumer.ingress.metrics import IngressMetrics, Refusals
from consumer.ingress.spool import SpooledCallback
from consumer.observability import serving
from consumer.settings.config import IngressSettings
from tests._support.kafka_helpers import wait_for


class BrokenStore:
    """A store with a bug: every `put` raises."""

    async def put(self, entry: SpooledCallback) -> str:
        raise RuntimeError("a bug in the store")


async def test_an_unexpected_error_is_answered_500_with_a_request_id_and_counted() -> None:
    """A bug behind the app gives a 500 carrying X-Request-Id, counted under requests by code
    and under refusals as internal_error, and logged: never a connection cut or a bare 500."""
    registry = IngressMetrics(lambda: 0.0, lambda: 0.0, lambda: 1.0)
    store: Any = BrokenStore()
    app = CallbackApp(IngressSettings(allow_anonymous=True), None, store, registry)
    listen = f"127.0.0.1:{free_port()}"
    limits = serving.Limits(max_connections=8, header_timeout=5, keep_alive_timeout=5)
    with structlog.testing.capture_logs() as logs:
        async with (
            serving.serve(app.answer, listen, limits, key="ingress.listen"),
            httpx.AsyncClient(timeout=10) as client,
        ):
            answer = await client.post(f"http://{listen}/callbacks", content=b'{"a": 1}')
    assert answer.status_code == 500
    assert answer.headers["X-Request-Id"]
    sample = registry.registry.get_sample_value
    assert sample("recording_consumer_ingress_refusals_total", {"reason": "internal_error"}) == 1
    assert sample("recording_consumer_ingress_requests_total", {"code": "500"}) == 1
    (line,) = [line for line in logs if line.get("reason") == "internal_error"]
    assert "a bug in the store" in line["detail"]
    assert isinstance(line["exc_info"], RuntimeError)  # its traceback goes to the log


class RecordingStore:
    """A store that takes every callback: what reached it."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def put(self, entry: SpooledCallback) -> str:
        self.values.append(entry.value)
        return "kafka"


async def test_a_sender_that_breaks_off_its_body_is_no_bug() -> None:
    """A connection closed mid-body (a client or proxy giving up) is counted as body_incomplete,
    not as internal_error (a 500 means a bug), and nothing of it is stored."""
    registry = IngressMetrics(lambda: 0.0, lambda: 0.0, lambda: 1.0)
    store = RecordingStore()
    taking: Any = store
    app = CallbackApp(IngressSettings(allow_anonymous=True), None, taking, registry)
    port = free_port()
    limits = serving.Limits(max_connections=8, header_timeout=5, keep_alive_timeout=5)
    sample = registry.registry.get_sample_value

    def refused(reason: str) -> float | None:
        return sample("recording_consumer_ingress_refusals_total", {"reason": reason})

    async with serving.serve(app.answer, f"127.0.0.1:{port}", limits, key="ingress.listen"):
        for head in (
            b"Content-Length: 100\r\n",
            b"Content-Length: 100\r\nExpect: 100-continue\r\n",
        ):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /callbacks HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + b'{"a": ')
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        await wait_for(lambda: refused("body_incomplete") == 2, 10, "both counted")
    assert refused("internal_error") is None
    assert store.values == []


async def test_refusals_left_unlogged_by_a_burst_are_logged_after_the_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst logs one line at once; `report` logs the rest of its count once the interval is
    over, with no later refusal needed to carry it, and never two lines within one interval."""
    monkeypatch.setattr(metrics, "LOG_EVERY", 0.2)
    refusals = Refusals(IngressMetrics(lambda: 0.0, lambda: 0.0, lambda: 1.0))
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            refusals.note("unauthorized", "wrong")
        first = time.monotonic()
        assert [line["count"] for line in logs] == [1]
        reporting = asyncio.create_task(refusals.report())
        try:
            await wait_for(lambda: len(logs) == 2, 10, "the burst's rest logged")
        finally:
            reporting.cancel()
        second = time.monotonic()
    assert [line["count"] for line in logs] == [1, 4]
    assert second - first >= metrics.LOG_EVERY
