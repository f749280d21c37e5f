"""The ingress's per-callback series, kept as plain numbers, scrape exactly as prometheus_client's
own Counter and Histogram would."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from consumer.ingress.metrics import DURATION_BUCKETS, PREFIX, Answers

ANSWERS = [(200, 0.0004), (200, 0.001), (401, 0.0025), (200, 0.0026), (503, 2.0), (200, 11.0)]
"""(code, seconds): on and between the bucket bounds, and past the last one."""


def _library_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    requests = Counter(
        PREFIX + "requests", "Requests answered, by HTTP status.", ["code"], registry=registry
    )
    duration = Histogram(
        PREFIX + "request_duration_seconds",
        "Seconds from a request's headers to its answer.",
        buckets=DURATION_BUCKETS,
        registry=registry,
    )
    produced = Counter(
        PREFIX + "produced",
        "Callbacks acknowledged by Kafka (direct or from the spool).",
        registry=registry,
    )
    for code, seconds in ANSWERS:
        requests.labels(str(code)).inc()
        duration.observe(seconds)
    produced.inc(4)
    return registry


def _own_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    answers = Answers()
    registry.register(answers)
    for code, seconds in ANSWERS:
        answers.answered(code, seconds)
    answers.produced += 4
    return registry


def _without_timestamps(exposition: bytes) -> str:
    """`_created` values are wall-clock times: the samples must match, not the clocks."""
    return re.sub(r"(_created(\{[^}]*\})?) \S+", r"\1 T", exposition.decode())


def test_the_exposition_is_the_libraries_own() -> None:
    """Text format and OpenMetrics alike, every line (names, labels, bucket bounds, cumulative
    counts, sums, `_created`) is what prometheus_client's Counter and Histogram would print."""
    for generate in (generate_latest, generate_openmetrics):
        ours = _without_timestamps(generate(_own_registry()))
        library = _without_timestamps(generate(_library_registry()))
        assert ours == library
    assert 'requests_total{code="401"} 1.0' in ours
    assert 'request_duration_seconds_bucket{le="0.0025"} 3.0' in ours
    assert 'request_duration_seconds_bucket{le="+Inf"} 6.0' in ours
