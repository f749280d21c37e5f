"""The scheduler with a stand-in delivery: pure asyncio, no broker (nothing here does I/O)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from consumer.engine.delivery import RetryState
from consumer.engine.intake import Job, Undecodable
from consumer.engine.offsets import Batch, OffsetTracker
from consumer.engine.scheduler import Scheduler
from consumer.events import RecordingAvailable
from consumer.interface import Record

TP = TopicPartition("recordings", 0)
ROUTE: tuple[tuple[str, Any], ...] = (("h", object()),)


class Offsets:
    """The committer's part the scheduler uses: finished offsets, into a real tracker."""

    def __init__(self) -> None:
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self.finished = asyncio.Event()

    def finish(self, batch: Batch, index: int) -> None:
        self.tracker.finish(batch, index)
        self.finished.set()


class ThreeAttempts:
    """Fails handler `h` twice (retry after 10 ms), then succeeds; notes each attempt number."""

    def __init__(self) -> None:
        self.attempts: list[int] = []
        self.first = asyncio.Event()

    async def attempt(self, work: Job[Any] | Undecodable) -> float | None:
        retry = work.retry = work.retry or RetryState()
        retry.attempts["h"] = number = retry.attempts.get("h", 0) + 1
        self.attempts.append(number)
        self.first.set()
        return 0.01 if number < 3 else None


def fetched(offsets: Offsets, offset: int) -> Job[Any]:
    """A job as the worker takes one in from a freshly fetched message."""
    record = Record(topic=TP.topic, partition=0, offset=offset, key=b"k", headers=(), timestamp=0)
    event = RecordingAvailable(recording_id="r-1")
    job: Job[Any] = Job(record, b"{}", b"k", event, None, ROUTE)
    job.batch, job.index = offsets.tracker.add(TP, [offset]), 0
    return job


async def revoke_midway(*assignments: list[TopicPartition]) -> tuple[list[int], Offsets]:
    """Run one message, revoke its partition after the first attempt, go through the given
    assignments, fetch it again and run it to the end; returns the attempt numbers seen."""
    offsets = Offsets()
    scheduler = Scheduler(offsets, runners=1)
    delivery = ThreeAttempts()
    task = asyncio.create_task(scheduler.work(delivery, 0))  # a stand-in for Delivery
    try:
        scheduler.submit(TP, [fetched(offsets, 0)])
        async with asyncio.timeout(5):
            await delivery.first.wait()
            assert await scheduler.quiesce([TP], 5, asyncio.Event())
        scheduler.forget([TP])
        offsets.tracker.forget([TP])
        for assigned in assignments:
            scheduler.assigned(assigned)
        scheduler.submit(TP, [fetched(offsets, 0)])
        async with asyncio.timeout(5):
            await offsets.finished.wait()
    finally:
        task.cancel()
    return delivery.attempts, offsets


async def test_retry_progress_survives_revoke_and_reassignment_to_the_same_worker() -> None:
    """A message revoked mid-retries and fetched again here resumes at its next attempt."""
    attempts, offsets = await revoke_midway([TP])
    assert attempts == [1, 2, 3]
    assert offsets.tracker.uncommitted() == {TP: 1}


async def test_retry_progress_is_dropped_when_the_partition_goes_elsewhere() -> None:
    """Assigned other partitions, the worker forgets the revoked message's attempts; coming
    back later, the message starts afresh, as on any other worker."""
    attempts, offsets = await revoke_midway([TopicPartition("recordings", 1)], [TP])
    assert attempts == [1, 1, 2, 3]
    assert offsets.tracker.uncommitted() == {TP: 1}
