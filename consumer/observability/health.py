"""Liveness and readiness: what the worker reports about itself, judged on progress.

Liveness (/healthz) fails when restarting would help: the event loop is blocked, the fetch loop
stopped turning, or a partition with lag has committed nothing for too long. Readiness (/readyz)
fails while the worker is not (or no longer) consuming: starting, broker unreachable, draining,
or failed for good (`Health.fail`).
"""

from __future__ import annotations

import time
from collections.abc import Collection

from aiokafka import TopicPartition

from consumer.settings.config import Settings


class Health:
    """One worker's observable state; the worker and its watchers update it, probes read it."""

    def __init__(self, settings: Settings) -> None:
        observability = settings.observability
        self._max_poll = settings.kafka.max_poll_interval_ms / 1000
        self._stall = observability.stall_timeout
        self._block = observability.loop_block_timeout
        now = time.monotonic()
        self.joined = False
        """Assigned partitions by the group (possibly none), and not in a rebalance."""
        self.draining = False
        self.failure: str | None = None
        self.down_since: float | None = None
        """When the broker stopped answering, or None while it answers."""
        self.last_fetch = now
        self.last_tick: float | None = None
        """When the loop watcher last ran; None while it is not running (start-up, shutdown)."""
        self._blocked_until = 0.0
        self._blocked_for = 0.0
        self._ends: dict[TopicPartition, int] = {}
        """The newest end offset known of each sampled partition: the probe's, or past it, the
        fetch position."""
        self._bases: dict[TopicPartition, int] = {}
        """Where each sampled partition's group stands: the last commit, or where it started."""
        self.last_commit: dict[TopicPartition, float] = {}
        """Wall-clock time of each assigned partition's last commit."""
        self._progress: dict[TopicPartition, float] = {}
        """When each partition last committed or was caught up (monotonic)."""

    def fail(self, reason: str) -> None:
        """The worker cannot go on (e.g. a batch it cannot read): /readyz reports `reason`."""
        self.failure = reason

    def assigned(self, partitions: Collection[TopicPartition]) -> None:
        now = time.monotonic()
        self.joined = True
        self._progress = dict.fromkeys(partitions, now)

    def revoked(self, partitions: Collection[TopicPartition]) -> None:
        self.joined = False
        for tp in partitions:
            self._progress.pop(tp, None)
            self._ends.pop(tp, None)
            self._bases.pop(tp, None)
            self.last_commit.pop(tp, None)

    @property
    def lag(self) -> dict[TopicPartition, int]:
        """End offset minus committed offset of each sampled partition, as of now: the stats
        line and /metrics read the same value, not the probe's last sample."""
        bases = self._bases
        return {tp: max(0, end - bases[tp]) for tp, end in self._ends.items() if tp in bases}

    def committed(self, points: dict[TopicPartition, int]) -> None:
        """Offsets committed: progress, and the point lag is counted from."""
        now, wall = time.monotonic(), time.time()
        for tp, offset in points.items():
            self._progress[tp] = now
            self.last_commit[tp] = wall
            if tp in self._ends:
                self._bases[tp] = offset

    def fetched_to(self, tp: TopicPartition, position: int) -> None:
        """The consumer's position in `tp`: the log ends at least there (fresher than a probe)."""
        if self._ends.get(tp, position) < position:
            self._ends[tp] = position

    def sampled_lag(
        self, ends: dict[TopicPartition, int], bases: dict[TopicPartition, int]
    ) -> None:
        """A probe's end offsets and group positions; a caught-up partition counts as making
        progress."""
        known = self._ends
        self._ends = {tp: max(end, known.get(tp, end)) for tp, end in ends.items()}
        self._bases = bases
        now = time.monotonic()
        for tp, behind in self.lag.items():
            if behind == 0:
                self._progress[tp] = now

    def loop_ran(self, late: float) -> None:
        """The loop watcher ran `late` seconds after it asked to."""
        now = time.monotonic()
        self.last_tick = now
        if late >= self._block:
            self._blocked_until, self._blocked_for = now + self._block, late

    def liveness_failures(self) -> list[str]:
        """Why the worker is not live; empty while it makes progress."""
        now = time.monotonic()
        found = []
        overdue = 0.0 if self.last_tick is None else now - self.last_tick
        if overdue >= self._block:
            found.append(f"event loop blocked for {overdue:.1f} s")
        elif now < self._blocked_until:
            found.append(f"event loop was blocked for {self._blocked_for:.1f} s")
        if now - self.last_fetch > self._max_poll:
            found.append(f"fetch loop has not run for {now - self.last_fetch:.0f} s")
        if self.down_since is None:  # during an outage, restarting would not help
            for tp, behind in sorted(self.lag.items()):
                since = self._progress.get(tp)
                if behind and since is not None and now - since > self._stall:
                    found.append(
                        f"{tp.topic}/{tp.partition}: {behind} behind, nothing committed "
                        f"for {now - since:.0f} s"
                    )
        return found

    def unready(self) -> list[str]:
        """Why the worker is not ready; empty once joined and consuming."""
        found = []
        if self.failure is not None:
            found.append(self.failure)
        if self.draining:
            found.append("draining for shutdown")
        elif not self.joined:
            found.append("waiting for the group's assignment")
        if self.down_since is not None:
            found.append("broker unreachable")
        return found
