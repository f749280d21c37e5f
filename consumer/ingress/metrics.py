"""The ingress's metrics, on a registry of its own (served on ``observability.listen``), and
its refusals: counted by reason, logged at most once per `LOG_EVERY` seconds per reason."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

PREFIX = "recording_consumer_ingress_"
LOG_EVERY = 10.0
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class IngressMetrics:
    """Counters the app and the store update; gauges read from the spool and Kafka's state."""

    def __init__(
        self,
        spool_messages: Callable[[], float],
        spool_bytes: Callable[[], float],
        kafka_up: Callable[[], float],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            PREFIX + "requests", "Requests answered, by HTTP status.", ["code"], registry=registry
        )
        self.duration = Histogram(
            PREFIX + "request_duration_seconds",
            "Seconds from a request's headers to its answer.",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.produced = Counter(
            PREFIX + "produced",
            "Callbacks acknowledged by Kafka (direct or from the spool).",
            registry=registry,
        )
        self.spooled = Counter(
            PREFIX + "spooled", "Callbacks written to the spool.", registry=registry
        )
        self.refusals = Counter(
            PREFIX + "refusals", "Requests refused, by reason.", ["reason"], registry=registry
        )
        gauges = (
            (
                "spool_messages",
                "Callbacks in the spool, not yet acknowledged by Kafka.",
                spool_messages,
            ),
            ("spool_bytes", "Bytes the spool holds on disk.", spool_bytes),
            ("kafka_up", "1 while Kafka acknowledges, else 0.", kafka_up),
        )
        for name, doc, read in gauges:
            Gauge(PREFIX + name, doc, registry=registry).set_function(read)
        ProcessCollector(registry=registry)


class Refusals:
    """Counts each refusal and logs one line per reason at most every `LOG_EVERY` seconds,
    with how many were refused since the last line: a flood must not become a flood of logs."""

    def __init__(self, metrics: IngressMetrics) -> None:
        self._counter = metrics.refusals
        self._log = structlog.get_logger("consumer.ingress")
        self._last: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def note(self, reason: str, detail: str) -> None:
        self._counter.labels(reason).inc()
        now = time.monotonic()
        count = self._unlogged.get(reason, 0) + 1
        if now - self._last.get(reason, float("-inf")) < LOG_EVERY:
            self._unlogged[reason] = count
            return
        self._last[reason] = now
        self._unlogged[reason] = 0
        self._log.warning("callback refused", reason=reason, detail=detail, count=count)
