"""The scheduler with a stand-in delivery: pure asyncio, no broker (nothing here does I/O)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from consumer.engine.delivery import Job
from consumer.engine.scheduler import Scheduler
from consumer.interface import Record

TP = TopicPartition("recordings", 0)


class ThreeAttempts:
    """Fails handler `h` twice (retry after 10 ms), then succeeds; notes each attempt number."""

    def __init__(self) -> None:
        self.attempts: list[int] = []
        self.first = asyncio.Event()

    async def attempt(self, job: Job) -> float | None:
        job.attempts["h"] = number = job.attempts.get("h", 0) + 1
        self.attempts.append(number)
        self.first.set()
        if number < 3:
            job.pending = list(job.route)
            return 0.01
        return None


def fetched(scheduler: Scheduler, offset: int) -> Job:
    """A job as the worker builds one for a freshly fetched message."""
    scheduler.offsets.add(TP, offset)
    record = Record(topic=TP.topic, partition=0, offset=offset, key=b"k", headers=(), timestamp=0)
    route: tuple[tuple[str, Any], ...] = (("h", object()),)
    return Job(record, b"{}", (TP, b"k"), scheduler.generation(TP), route=route, pending=[*route])


async def revoke_midway(*assignments: list[TopicPartition]) -> tuple[list[int], Scheduler]:
    """Run one message, revoke its partition after the first attempt, go through the given
    assignments, fetch it again and run it to the end; returns the attempt numbers seen."""
    finished = asyncio.Event()
    scheduler = Scheduler(on_finished=finished.set)
    delivery = ThreeAttempts()
    task = asyncio.create_task(scheduler.work(delivery))  # a stand-in for Delivery
    try:
        scheduler.submit(fetched(scheduler, 0))
        async with asyncio.timeout(5):
            await delivery.first.wait()
            assert await scheduler.quiesce([TP], 5, asyncio.Event())
        scheduler.forget([TP])
        for assigned in assignments:
            scheduler.assigned(assigned)
        scheduler.submit(fetched(scheduler, 0))
        async with asyncio.timeout(5):
            await finished.wait()
    finally:
        task.cancel()
    return delivery.attempts, scheduler


async def test_retry_progress_survives_revoke_and_reassignment_to_the_same_worker() -> None:
    """A message revoked mid-retries and fetched again here resumes at its next attempt."""
    attempts, scheduler = await revoke_midway([TP])
    assert attempts == [1, 2, 3]
    assert scheduler.offsets.uncommitted() == {TP: 1}


async def test_retry_progress_is_dropped_when_the_partition_goes_elsewhere() -> None:
    """Assigned other partitions, the worker forgets the revoked message's attempts; coming
    back later, the message starts afresh, as on any other worker."""
    attempts, scheduler = await revoke_midway([TopicPartition("recordings", 1)], [TP])
    assert attempts == [1, 1, 2, 3]
    assert scheduler.offsets.uncommitted() == {TP: 1}
