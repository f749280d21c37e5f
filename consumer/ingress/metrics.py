"""The ingress's metrics, on a registry of its own (served on ``observability.listen``), and
its refusals: counted by reason, logged at most once per `LOG_EVERY` seconds per reason."""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

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
        self.answers = Answers()
        registry.register(self.answers)
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


class Answers(Collector):
    """Requests answered (by code), their durations and the callbacks produced: the series every
    callback updates, kept as plain numbers and turned into samples when scraped.

    prometheus_client's Counter and Histogram take a lock on every update, some 2 µs a callback
    on the ingress's one thread; the samples are the same (`_total`, `_bucket`, `_created`)."""

    def __init__(self) -> None:
        self._started = time.time()
        self._codes: dict[int, list[float]] = {}
        """HTTP status: [requests, when the first was answered]."""
        self._buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self._bounds = [*(repr(float(bound)) for bound in DURATION_BUCKETS), "+Inf"]
        """Each bucket's ``le`` label, as prometheus_client writes it."""
        self._seconds = 0.0
        self.produced = 0
        """Callbacks acknowledged by Kafka, direct or from the spool."""

    def answered(self, code: int, seconds: float) -> None:
        counted = self._codes.get(code)
        if counted is None:
            counted = self._codes[code] = [0, time.time()]
        counted[0] += 1
        self._buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self._seconds += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            PREFIX + "requests", "Requests answered, by HTTP status.", labels=["code"]
        )
        for code, (count, created) in sorted(self._codes.items()):
            requests.add_metric([str(code)], count, created=created)
        yield requests
        cumulative = 0
        buckets = []
        for bound, count in zip(self._bounds, self._buckets, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        name = PREFIX + "request_duration_seconds"
        duration = HistogramMetricFamily(
            name,
            "Seconds from a request's headers to its answer.",
            buckets=buckets,
            sum_value=self._seconds,
        )
        duration.add_sample(name + "_created", {}, self._started)
        yield duration
        produced = CounterMetricFamily(
            PREFIX + "produced",
            "Callbacks acknowledged by Kafka (direct or from the spool).",
        )
        produced.add_metric([], self.produced, created=self._started)
        yield produced


class Refusals:
    """Counts each refusal and logs one line per reason at most every `LOG_EVERY` seconds,
    with how many were refused since the last line: a flood must not become a flood of logs."""

    def __init__(self, metrics: IngressMetrics) -> None:
        self._counter = metrics.refusals
        self._log = structlog.get_logger("consumer.ingress")
        self._last: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def note(self, reason: str, detail: str, error: BaseException | None = None) -> None:
        """Count a refusal; `error`, a bug's exception, goes into the log line with its
        traceback when this refusal is the one logged."""
        self._counter.labels(reason).inc()
        now = time.monotonic()
        count = self._unlogged.get(reason, 0) + 1
        if now - self._last.get(reason, float("-inf")) < LOG_EVERY:
            self._unlogged[reason] = count
            return
        self._last[reason] = now
        self._unlogged[reason] = 0
        self._log.warning(
            "callback refused", reason=reason, detail=detail, count=count, exc_info=error
        )

    async def report(self) -> None:
        """Until cancelled: log the refusals a burst left unlogged once their interval is over,
        so the counts add up even when no later refusal of the same reason comes to carry them."""
        while True:
            await asyncio.sleep(LOG_EVERY)
            now = time.monotonic()
            for reason, count in self._unlogged.items():
                if count and now - self._last[reason] >= LOG_EVERY:
                    self._last[reason] = now
                    self._unlogged[reason] = 0
                    self._log.warning("callback refused", reason=reason, count=count)
