"""Pure units behind the endpoint: liveness and readiness verdicts, histogram buckets, label
folding. (The broker-backed behaviour is in test_observability.py and test_outage.py.)"""

from __future__ import annotations

import time

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from consumer.engine.tally import Tally
from consumer.engine.worker import Load
from consumer.observability.health import Health
from consumer.observability.metrics import Durations, registry_for
from consumer.settings.config import KafkaSettings, ObservabilitySettings, Settings

TP = TopicPartition("recordings", 0)


def health(**observability: float) -> Health:
    return Health(
        Settings(
            kafka=KafkaSettings(max_poll_interval_ms=1_000),
            observability=ObservabilitySettings(**observability),  # type: ignore[arg-type]
        )
    )


def test_readiness_needs_an_assignment_a_broker_and_no_drain() -> None:
    """Not ready before the assignment, during a rebalance, an outage, a drain or a failure."""
    h = health()
    assert h.unready() == ["waiting for the group's assignment"]
    h.assigned([TP])
    assert h.unready() == []
    h.revoked([TP])
    assert h.unready() == ["waiting for the group's assignment"]
    h.assigned([TP])
    h.down_since = time.monotonic()
    assert h.unready() == ["broker unreachable"]
    h.down_since = None
    h.fail("batch at recordings/0 offset 7 cannot be read")
    assert h.unready() == ["batch at recordings/0 offset 7 cannot be read"]
    h.failure = None
    h.draining = True
    assert h.unready() == ["draining for shutdown"]


def test_liveness_fails_when_the_fetch_loop_stops_turning() -> None:
    """A fetch loop idle for longer than kafka.max_poll_interval_ms is reported."""
    h = health()
    assert h.liveness_failures() == []
    h.last_fetch = time.monotonic() - 2.0
    (problem,) = h.liveness_failures()
    assert problem.startswith("fetch loop has not run for")


def test_liveness_fails_on_a_stalled_lagging_partition_only() -> None:
    """Lag with no commit past stall_timeout fails; caught up, committing, or during an outage
    (a restart would not help) it does not."""
    h = health(stall_timeout=0.2)
    h.assigned([TP])
    h.sampled_lag({TP: 10}, {TP: 10})
    h._progress[TP] -= 1.0  # as if caught up a second ago
    h.sampled_lag({TP: 14}, {TP: 10})
    (problem,) = h.liveness_failures()
    assert problem.startswith("recordings/0: 4 behind, nothing committed for")
    h.down_since = time.monotonic()
    assert h.liveness_failures() == []
    h.down_since = None
    h.committed({TP: 14})
    assert h.liveness_failures() == []
    assert h.lag == {TP: 0}


def test_lag_counts_what_was_fetched_since_the_probe_and_commits_at_once() -> None:
    """Lag is current, not the probe's last sample: a message fetched after the probe counts
    at once, and the commit of everything brings it to 0 at once; an older fetch position or
    a probe with an older end offset never lowers the end."""
    h = health()
    h.assigned([TP])
    h.sampled_lag({TP: 10}, {TP: 10})
    assert h.lag == {TP: 0}
    h.fetched_to(TP, 11)
    assert h.lag == {TP: 1}
    h.fetched_to(TP, 10)
    h.sampled_lag({TP: 10}, {TP: 10})
    assert h.lag == {TP: 1}
    h.committed({TP: 11})
    assert h.lag == {TP: 0}
    h.revoked([TP])
    h.fetched_to(TP, 12)
    assert h.lag == {}


def test_liveness_fails_while_and_just_after_the_loop_was_blocked() -> None:
    """An overdue loop watcher, or a late tick within loop_block_timeout, is reported."""
    h = health(loop_block_timeout=0.5)
    h.loop_ran(0.0)
    assert h.liveness_failures() == []
    h.last_tick = time.monotonic() - 1.0
    assert h.liveness_failures()[0].startswith("event loop blocked for")
    h.loop_ran(1.0)
    assert h.liveness_failures() == ["event loop was blocked for 1.0 s"]
    h.last_tick = None  # watcher stopped (start-up, shutdown): nothing to judge
    h._blocked_until = 0.0
    assert h.liveness_failures() == []


class _One(Collector):
    def __init__(self, durations: Durations) -> None:
        self._durations = durations

    def collect(self) -> list[Metric]:
        return [self._durations.family()]


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    """A value equal to a bound counts in that bucket; +Inf and _count hold every value."""
    durations = Durations()
    for seconds in (0.005, 0.006, 0.3, 400.0):
        durations.observe("download", "ok", seconds)
    registry = CollectorRegistry()
    registry.register(_One(durations))
    (family,) = text_string_to_metric_families(generate_latest(registry).decode())
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    assert buckets["0.005"] == 1
    assert buckets["0.01"] == 2
    assert buckets["0.5"] == 3
    assert buckets["300.0"] == 3
    assert buckets["+Inf"] == 4
    (count,) = [s.value for s in family.samples if s.name.endswith("_count")]
    assert count == 4


def test_odd_label_values_stay_bounded() -> None:
    """Thousands of unknown statuses are folded as they are counted: one key, no count lost."""
    tally = Tally()
    for n in range(3_000):
        tally.finished("handled", f"status-{n}", "recordingAvailable")
        tally.handled_by(f"status-{n}", "log")
    tally.finished("retried", "complete", "recordingAvailable")
    tally.finished("handled", "complete", "recordingAvailable")
    assert tally.messages == {
        ("handled", "other", "recordingAvailable"): 3_000,
        ("handled", "complete", "recordingAvailable"): 1,
    }
    assert tally.routed == {("other", "log"): 3_000}


class _Stopped:
    """The little a scrape reads of a worker, with nothing running: a `WorkerView`."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.settings = Settings()

    def load(self) -> Load:
        return Load(0, 0, 0)

    def committed_offset(self, tp: TopicPartition) -> int | None:
        return None


def test_unrouted_messages_are_scraped_as_skipped() -> None:
    """The tally keeps the engine's outcome names; /metrics counts ``unrouted`` (no route named
    a handler) under ``skipped`` beside the skipped callbacks, and leaves retries out."""
    tally = Tally()
    tally.finished("unrouted", "complete", "recordingAvailable")
    tally.finished("skipped", None, "answer")
    tally.finished("skipped", None, "answer")
    tally.finished("retried", "complete", "recordingAvailable")
    registry = registry_for(_Stopped(tally), health(), Durations())
    families = text_string_to_metric_families(generate_latest(registry).decode())
    (messages,) = [f for f in families if f.name == "recording_consumer_messages"]
    counted = {
        (s.labels["outcome"], s.labels["status"], s.labels["event_type"]): s.value
        for s in messages.samples
        if s.name.endswith("_total")
    }
    assert counted == {
        ("skipped", "complete", "recordingAvailable"): 1,
        ("skipped", "other", "answer"): 2,
    }
