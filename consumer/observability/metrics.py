"""Prometheus metrics: plain counters on the hot path, metric families built only when scraped.

The worker counts into its tally (dict increments, no locks) and its handler attempts' durations
into `Durations`; `WorkerCollector` turns them, the worker's health and its current state into
Prometheus families at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from consumer.observability.health import Health
from consumer.observability.view import WorkerView
from consumer.outcomes import Outcome

PREFIX: Final = "recording_consumer_"
OUTCOMES: Final = {
    "handled": "handled",
    "skipped": "skipped",
    "unrouted": "skipped",
    "duplicate": "duplicate",
    "dead_lettered": "dead_lettered",
    "undecodable": "undecodable",
}
"""The engine's outcome names to the metric's; a retry being scheduled is not an outcome."""
BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Durations:
    """Handler attempt durations per (handler, result), in Prometheus histogram buckets."""

    __slots__ = ("_series",)

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], list[float]] = {}
        """Per series: a count per bucket (the last is +Inf), then the sum of the seconds."""

    def observe(self, handler: str, result: str, seconds: float) -> None:
        series = self._series.get((handler, result))
        if series is None:
            series = self._series[(handler, result)] = [0.0] * (len(BUCKETS) + 2)
        series[bisect_left(BUCKETS, seconds)] += 1
        series[-1] += seconds

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            PREFIX + "handler_duration_seconds",
            "Duration of handler attempts, by handler and result (ok, skipped, retry, failed).",
            labels=["handler", "result"],
        )
        bounds = [*(str(b) for b in BUCKETS), "+Inf"]
        for labels, series in sorted(self._series.items()):
            cumulative, total = [], 0.0
            for bound, count in zip(bounds, series, strict=False):
                total += count
                cumulative.append((bound, total))
            family.add_metric(list(labels), cumulative, sum_value=series[-1])
        return family


class WorkerCollector(Collector):
    """Reads one worker's tally and state each time Prometheus scrapes."""

    def __init__(self, worker: WorkerView, health: Health, durations: Durations) -> None:
        self._worker = worker
        self._health = health
        self._durations = durations

    def collect(self) -> Iterator[Metric]:
        worker, health = self._worker, self._health
        tally, load = worker.tally, worker.load()
        messages = _counter(
            "messages", "Messages finished, by outcome.", ["outcome", "status", "event_type"]
        )
        for labels, count in sorted(_message_labels(tally.messages).items()):
            messages.add_metric(list(labels), count)
        yield messages
        yield self._durations.family()
        retries = _counter("retries", "Handler retries scheduled.", ["handler"])
        for handler, count in sorted(tally.retries.items()):
            retries.add_metric([handler], count)
        yield retries
        dead = _counter("dead_letters", "Messages published to the dead-letter topic.", ["reason"])
        for reason, count in sorted(tally.dead_letters.items()):
            dead.add_metric([reason], count)
        yield dead
        lag = _gauge(
            "lag_messages", "High watermark minus committed offset.", ["topic", "partition"]
        )
        for tp, behind in sorted(health.lag.items()):
            lag.add_metric([tp.topic, str(tp.partition)], behind)
        yield lag
        yield _gauge("in_flight", "Handler attempts running now.", value=load.in_flight)
        yield _gauge("buffered", "Fetched messages not finished yet.", value=load.buffered)
        yield _gauge("paused_partitions", "Partitions paused by backpressure.", value=load.paused)
        yield _counter("commits", "Successful offset commits.", value=tally.commits)
        yield _counter("commit_failures", "Failed offset commits.", value=tally.commit_failures)
        yield _counter("rebalances", "Partition assignments received.", value=tally.rebalances)
        last = _gauge(
            "last_commit_timestamp_seconds",
            "When each assigned partition last committed, in seconds since the epoch.",
            ["partition"],
        )
        for tp, when in sorted(health.last_commit.items()):
            last.add_metric([str(tp.partition)], when)
        yield last
        ready = _gauge("ready", "1 when /readyz answers 200.", value=0 if health.unready() else 1)
        yield ready
        yield _gauge(
            "broker_reachable",
            "1 unless the last probe of the broker failed.",
            value=1 if health.down_since is None else 0,
        )


def registry_for(worker: WorkerView, health: Health, durations: Durations) -> CollectorRegistry:
    """A registry of the worker's metrics and the process's own (CPU, memory, open files)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(worker, health, durations))
    ProcessCollector(registry=registry)
    return registry


def _message_labels(messages: Mapping[tuple[Outcome, str, str], int]) -> Counter[tuple[str, ...]]:
    """The tally's counts by the metric's outcome names (``unrouted`` counts as ``skipped``)."""
    labelled: Counter[tuple[str, ...]] = Counter()
    for (outcome, status, event_type), count in messages.items():
        labelled[(OUTCOMES[outcome], status, event_type)] += count
    return labelled


def _counter(
    name: str, doc: str, labels: list[str] | None = None, value: float | None = None
) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, value=value, labels=labels)


def _gauge(
    name: str, doc: str, labels: list[str] | None = None, value: float | None = None
) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value, labels=labels)
