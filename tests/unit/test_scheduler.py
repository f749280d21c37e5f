"""The scheduler with a stand-in delivery: pure asyncio, no broker (nothing here does I/O)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from consumer.engine.delivery import RetryState
from consumer.engine.intake import Job
from consumer.engine.scheduler import Attempts, Queued, Scheduler
from consumer.events import RecordingAvailable
from consumer.handler_api import Record
from tests._support.kafka_helpers import FinishedOffsets

TP = TopicPartition("recordings", 0)
ROUTE: tuple[tuple[str, Any], ...] = (("h", object()),)


class ThreeAttempts:
    """Fails handler `h` twice (retry after 10 ms), then succeeds; notes each attempt number."""

    def __init__(self) -> None:
        self.attempts: list[int] = []
        self.first = asyncio.Event()

    async def attempt(self, work: Queued) -> float | None:
        retry = work.retry = work.retry or RetryState()
        retry.attempts["h"] = number = retry.attempts.get("h", 0) + 1
        self.attempts.append(number)
        self.first.set()
        return 0.01 if number < 3 else None


def fetched(offsets: FinishedOffsets, offset: int) -> Job[Any]:
    """A job as the worker takes one in from a freshly fetched message."""
    record = Record(topic=TP.topic, partition=0, offset=offset, key=b"k", headers=(), timestamp=0)
    event = RecordingAvailable(recording_id="r-1")
    job: Job[Any] = Job(record, b"{}", b"k", event, None, ROUTE)
    job.batch, job.index = offsets.tracker.add(TP, [offset]), 0
    return job


async def revoke_midway(*assignments: list[TopicPartition]) -> tuple[list[int], FinishedOffsets]:
    """Run one message, revoke its partition after the first attempt, go through the given
    assignments, fetch it again and run it to the end; returns the attempt numbers seen."""
    offsets = FinishedOffsets()
    scheduler = Scheduler(offsets, runners=1)
    delivery = ThreeAttempts()
    task = asyncio.create_task(scheduler.runner(delivery, 0))  # a stand-in for Delivery
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


class Gated:
    """A stand-in delivery: each attempt runs until the gate of its (partition, offset) opens,
    then asks for the retry its script names; notes attempts, concurrency and cancellations."""

    def __init__(self, retries: dict[tuple[int, int], float] | None = None) -> None:
        self.retries = retries or {}
        """(partition, offset) -> delay its first attempt asks for."""
        self.gates: dict[tuple[int, int], asyncio.Event] = {}
        self.attempts: list[tuple[int, int, int]] = []
        """(partition, offset, attempt number), the number kept in the job's retry state as
        Delivery keeps it."""
        self.running: set[tuple[int, int]] = set()
        self.most = 0
        self.cancelled: list[tuple[int, int]] = []
        self.changed = asyncio.Event()

    @property
    def started(self) -> list[tuple[int, int]]:
        """(partition, offset) of every attempt, in the order they started."""
        return [(partition, offset) for partition, offset, _ in self.attempts]

    def gate(self, partition: int, offset: int) -> asyncio.Event:
        return self.gates.setdefault((partition, offset), asyncio.Event())

    def open(self, *where: tuple[int, int]) -> None:
        for partition, offset in where:
            self.gate(partition, offset).set()

    async def attempt(self, work: Queued) -> float | None:
        where = (work.record.partition, work.record.offset)
        retry = work.retry = work.retry or RetryState()
        retry.attempts["h"] = number = retry.attempts.get("h", 0) + 1
        self.attempts.append((*where, number))
        self.running.add(where)
        self.most = max(self.most, len(self.running))
        self.changed.set()
        try:
            await self.gate(*where).wait()
        except asyncio.CancelledError:
            self.cancelled.append(where)
            raise
        finally:
            self.running.discard(where)
            self.changed.set()
        return self.retries.get(where) if number == 1 else None

    async def until(self, check: Callable[[], bool]) -> None:
        """Wait until `check` holds; the scheduler finishes a job's offset in the same step as
        its attempt returns, so a change noted here has reached the offsets too."""
        async with asyncio.timeout(5):
            while not check():
                self.changed.clear()
                await self.changed.wait()


def batch_of(
    offsets: FinishedOffsets, tp: TopicPartition, keys: Sequence[Hashable], first: int = 0
) -> list[Job[Any]]:
    """One fetched batch of `tp`: a job per key, at offsets `first`, `first` + 1, ..."""
    batch = offsets.tracker.add(tp, list(range(first, first + len(keys))))
    jobs = []
    for index, key in enumerate(keys):
        record = Record(tp.topic, tp.partition, first + index, None, (), 0)
        event = RecordingAvailable(recording_id=str(key))
        job: Job[Any] = Job(record, b"{}", key, event, None, ROUTE)
        job.batch, job.index = batch, index
        jobs.append(job)
    return jobs


@asynccontextmanager
async def runners(
    scheduler: Scheduler, delivery: Attempts, count: int
) -> AsyncIterator[list[asyncio.Task[None]]]:
    """`count` runner tasks, cancelled on the way out."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(scheduler.runner(delivery, n)) for n in range(count)]
        try:
            yield tasks
        finally:
            for task in tasks:
                task.cancel()


def back_again(scheduler: Scheduler, offsets: FinishedOffsets) -> None:
    """Hand TP over as the worker does, get it back, and fetch its offset 0 (key "a") again."""
    scheduler.forget([TP])
    offsets.tracker.forget([TP])
    scheduler.assigned([TP])
    scheduler.submit(TP, batch_of(offsets, TP, ["a"]))


async def settle() -> None:
    """Let every task that can run do so: a few passes of the loop, no waiting on time."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_runners_bound_how_many_attempts_run_at_once() -> None:
    """With 3 runners and 6 ready jobs exactly 3 attempts run at once; all 6 finish."""
    offsets, gated = FinishedOffsets(), Gated()
    scheduler = Scheduler(offsets, runners=3)
    async with runners(scheduler, gated, 3):
        scheduler.submit(TP, batch_of(offsets, TP, "abcdef"))
        await gated.until(lambda: len(gated.running) == 3)
        await settle()
        assert len(gated.started) == 3
        gated.open(*((0, offset) for offset in range(6)))
        await gated.until(lambda: offsets.tracker.in_flight() == 0)

    assert gated.most == 3
    assert sorted(gated.started) == [(0, offset) for offset in range(6)]
    assert offsets.tracker.uncommitted() == {TP: 6}


async def test_commit_point_never_passes_an_unfinished_offset() -> None:
    """Offsets 0 and 2-4 finished, 1 still running: the commit point stops at 1 until it ends."""
    offsets, gated = FinishedOffsets(), Gated()
    scheduler = Scheduler(offsets, runners=5)
    jobs = batch_of(offsets, TP, "abcde")
    async with runners(scheduler, gated, 5):
        scheduler.submit(TP, jobs)
        gated.open((0, 0), (0, 2), (0, 3), (0, 4))
        await gated.until(lambda: offsets.tracker.in_flight() == 1)
        assert bytes(jobs[0].batch.done) == bytes([1, 0, 1, 1, 1])
        assert offsets.tracker.uncommitted() == {TP: 1}
        gated.open((0, 1))
        await gated.until(lambda: offsets.tracker.in_flight() == 0)

    assert offsets.tracker.uncommitted() == {TP: 5}


async def test_a_retry_waiting_on_its_timer_holds_only_its_own_lane() -> None:
    """A retry waiting a minute holds key a's next job; key b runs; the commit stays behind."""
    offsets, gated = FinishedOffsets(), Gated(retries={(0, 0): 60.0})
    scheduler = Scheduler(offsets, runners=2)
    async with runners(scheduler, gated, 2):
        scheduler.submit(TP, batch_of(offsets, TP, ["a", "a", "b", "b"]))
        gated.open((0, 0), (0, 1), (0, 2), (0, 3))
        await gated.until(lambda: offsets.tracker.in_flight() == 2)
        await settle()
        assert sorted(gated.started) == [(0, 0), (0, 2), (0, 3)]
        assert offsets.tracker.uncommitted() == {}
        await scheduler.drain(5, asyncio.Event())  # drops the timer: the test need not wait


async def test_a_retried_job_runs_again_before_the_next_of_its_key() -> None:
    """After its timer, a retried job runs again and only then does its key's next job start."""
    offsets, gated = FinishedOffsets(), Gated(retries={(0, 0): 0.005})
    scheduler = Scheduler(offsets, runners=2)
    async with runners(scheduler, gated, 2):
        scheduler.submit(TP, batch_of(offsets, TP, ["a", "a"]))
        gated.open((0, 0), (0, 1))
        await gated.until(lambda: offsets.tracker.in_flight() == 0)

    assert gated.attempts == [(0, 0, 1), (0, 0, 2), (0, 1, 1)]
    assert offsets.tracker.uncommitted() == {TP: 2}


async def test_quiesce_without_grace_cancels_only_that_partitions_attempt() -> None:
    """Grace 0 cancels the revoked partition's attempt (False); others run, the runner serves on."""
    other = TopicPartition("recordings", 1)
    offsets, gated = FinishedOffsets(), Gated()
    scheduler = Scheduler(offsets, runners=2)
    async with runners(scheduler, gated, 2) as tasks:
        scheduler.submit(TP, batch_of(offsets, TP, ["a"]))
        scheduler.submit(other, batch_of(offsets, other, ["a"]))
        await gated.until(lambda: len(gated.running) == 2)
        assert await scheduler.quiesce([TP], 0, asyncio.Event()) is False
        assert gated.cancelled == [(0, 0)]
        assert gated.running == {(1, 0)}
        assert not any(task.done() for task in tasks)
        scheduler.forget([TP])
        offsets.tracker.forget([TP])
        scheduler.submit(other, batch_of(offsets, other, ["b"], first=1))
        await gated.until(lambda: gated.running == {(1, 0), (1, 1)})  # both runners serve
        gated.open((1, 0), (1, 1))
        await gated.until(lambda: offsets.tracker.in_flight() == 0)

    assert offsets.tracker.uncommitted() == {other: 2}


async def test_quiesce_waits_for_a_running_attempt_within_its_grace() -> None:
    """An attempt that ends within the grace is not cancelled, and quiesce says True."""
    offsets, gated = FinishedOffsets(), Gated()
    scheduler = Scheduler(offsets, runners=1)
    async with runners(scheduler, gated, 1):
        scheduler.submit(TP, batch_of(offsets, TP, ["a"]))
        await gated.until(lambda: bool(gated.running))
        quiesced = asyncio.create_task(scheduler.quiesce([TP], 5, asyncio.Event()))
        await settle()
        assert not quiesced.done()
        gated.open((0, 0))
        assert await quiesced is True

    assert gated.cancelled == []
    assert offsets.tracker.uncommitted() == {TP: 1}


async def test_drain_lets_the_running_attempt_finish_and_starts_nothing_new() -> None:
    """Draining, the running job finishes and is committable; the queued one never starts."""
    offsets, gated = FinishedOffsets(), Gated()
    scheduler = Scheduler(offsets, runners=1)
    async with runners(scheduler, gated, 1):
        scheduler.submit(TP, batch_of(offsets, TP, "ab"))
        await gated.until(lambda: bool(gated.running))
        drained = asyncio.create_task(scheduler.drain(5, asyncio.Event()))
        await settle()
        gated.open((0, 0), (0, 1))
        await drained
        await settle()

    assert gated.started == [(0, 0)]
    assert offsets.tracker.uncommitted() == {TP: 1}


async def test_drain_stops_waiting_when_forced() -> None:
    """Set `force` and drain returns at once, warning, though an attempt still runs."""
    offsets, gated = FinishedOffsets(), Gated()
    scheduler = Scheduler(offsets, runners=1)
    force = asyncio.Event()
    async with runners(scheduler, gated, 1):
        scheduler.submit(TP, batch_of(offsets, TP, "a"))
        await gated.until(lambda: bool(gated.running))
        with capture_logs() as logs:
            drained = asyncio.create_task(scheduler.drain(60, force))
            await settle()
            force.set()
            async with asyncio.timeout(5):
                await drained
        assert gated.running == {(0, 0)}

    assert [line["event"] for line in logs] == [
        "cancelling handlers still running; their messages will be redelivered"
    ]
    assert offsets.tracker.uncommitted() == {}


class BrokenOnce:
    """A stand-in delivery whose first attempt fails inside the engine (not in a handler)."""

    def __init__(self) -> None:
        self.attempts = 0

    async def attempt(self, work: Queued) -> float | None:
        self.attempts += 1
        if self.attempts == 1:
            raise RuntimeError("dead-letter topic unreachable")
        return None


async def test_an_engine_error_keeps_the_message_and_retries_it() -> None:
    """An attempt raising is logged as an engine error, its offset held, and it runs again."""
    offsets, broken = FinishedOffsets(), BrokenOnce()
    scheduler = Scheduler(offsets, runners=1)
    with capture_logs() as logs:
        async with runners(scheduler, broken, 1):
            scheduler.submit(TP, batch_of(offsets, TP, "a"))
            async with asyncio.timeout(5):
                await offsets.finished.wait()

    assert broken.attempts == 2
    assert offsets.tracker.uncommitted() == {TP: 1}
    (line,) = logs
    assert (line["event"], line["offset"], line["log_level"]) == (
        "engine error; retrying message",
        0,
        "error",
    )


class Suspending:
    """A stand-in delivery that yields to the loop a scripted number of times per attempt and
    asks some jobs' first attempt for a retry; notes order and overlaps instead of asserting
    (an assertion raised in here would count as an engine error and be retried)."""

    def __init__(self, script: dict[tuple[int, int], tuple[int, bool]]) -> None:
        self.script = script
        self.tried: set[tuple[int, int]] = set()
        self.busy: set[Hashable] = set()
        self.overlaps: list[Hashable] = []
        self.running = 0
        self.most = 0
        self.done: dict[Hashable, list[int]] = {}
        self.changed = asyncio.Event()

    async def attempt(self, work: Queued) -> float | None:
        where = (work.record.partition, work.record.offset)
        yields, fails = self.script[where]
        if work.lane in self.busy:
            self.overlaps.append(work.lane)
        self.busy.add(work.lane)
        self.running += 1
        self.most = max(self.most, self.running)
        for _ in range(yields):
            await asyncio.sleep(0)
        self.running -= 1
        self.busy.discard(work.lane)
        self.changed.set()
        if fails and where not in self.tried:
            self.tried.add(where)
            return 0.001
        self.done.setdefault(work.lane, []).append(work.record.offset)
        return None


async def scramble(
    count: int, jobs: list[tuple[int, str, int, bool]]
) -> tuple[Suspending, FinishedOffsets]:
    """Run `jobs` (partition, key, yields, first attempt fails) fetched as one batch per
    partition on `count` runners, until all finished."""
    offsets = FinishedOffsets()
    script = {}
    works: list[tuple[TopicPartition, list[Job[Any]]]] = []
    for partition in (0, 1):
        mine = [job for job in jobs if job[0] == partition]
        if not mine:
            continue  # a fetch returns no empty batches
        tp = TopicPartition("recordings", partition)
        works.append((tp, batch_of(offsets, tp, [key for _, key, _, _ in mine])))
        for offset, (_, _, yields, fails) in enumerate(mine):
            script[(partition, offset)] = (yields, fails)
    delivery = Suspending(script)
    scheduler = Scheduler(offsets, runners=count)
    async with runners(scheduler, delivery, count):
        for tp, batch in works:
            scheduler.submit(tp, batch)
        async with asyncio.timeout(5):
            while offsets.tracker.in_flight():
                delivery.changed.clear()
                await delivery.changed.wait()
    return delivery, offsets


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4),
    st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from("abc"), st.integers(0, 3), st.booleans()),
        min_size=1,
        max_size=30,
    ),
)
def test_per_key_order_holds_under_concurrency_and_retries(
    count: int, jobs: list[tuple[int, str, int, bool]]
) -> None:
    """Random suspensions and retries: key order kept, no overlap, runners bound, all committed."""
    delivery, offsets = asyncio.run(scramble(count, jobs))

    assert delivery.overlaps == []
    assert delivery.most <= count
    for order in delivery.done.values():
        assert order == sorted(order)
    assert sum(len(order) for order in delivery.done.values()) == len(jobs)
    ends = {partition: sum(job[0] == partition for job in jobs) for partition in (0, 1)}
    expected = {TopicPartition("recordings", p): end for p, end in ends.items() if end}
    assert offsets.tracker.uncommitted() == expected


async def test_a_retry_due_during_a_revocation_keeps_its_progress() -> None:
    """A due retry taken by a free runner while a revocation waits is carried: resumes at 2."""
    other = TopicPartition("recordings", 1)
    offsets, gated = FinishedOffsets(), Gated(retries={(0, 0): 0.0})
    scheduler = Scheduler(offsets, runners=2)
    async with runners(scheduler, gated, 2):
        scheduler.submit(other, batch_of(offsets, other, ["b"]))
        gated.open((0, 0))
        scheduler.submit(TP, batch_of(offsets, TP, ["a", "c"]))
        await gated.until(lambda: gated.running == {(1, 0), (0, 1)})
        await settle()  # the zero-second retry timer fires; both runners are busy
        quiesced = asyncio.create_task(scheduler.quiesce([TP], 5, asyncio.Event()))
        await settle()
        gated.open((1, 0))  # its runner is free while TP's revocation waits for offset 1
        await settle()
        gated.open((0, 1))
        assert await quiesced is True
        back_again(scheduler, offsets)
        await gated.until(lambda: offsets.tracker.in_flight() == 0)

    assert [(offset, n) for partition, offset, n in gated.attempts if partition == 0] == [
        (0, 1),
        (1, 1),
        (0, 2),
    ]


async def test_an_attempt_ending_in_a_retry_during_a_revocation_keeps_its_progress() -> None:
    """An attempt failing while a revocation waits for it is carried, not left on a timer."""
    offsets, gated = FinishedOffsets(), Gated(retries={(0, 0): 60.0})
    scheduler = Scheduler(offsets, runners=1)
    async with runners(scheduler, gated, 1):
        scheduler.submit(TP, batch_of(offsets, TP, ["a"]))
        await gated.until(lambda: bool(gated.running))
        quiesced = asyncio.create_task(scheduler.quiesce([TP], 5, asyncio.Event()))
        await settle()
        gated.open((0, 0))  # attempt 1 ends asking for a retry in a minute
        assert await quiesced is True
        back_again(scheduler, offsets)
        await gated.until(lambda: len(gated.attempts) == 2)
        await scheduler.drain(5, asyncio.Event())

    assert gated.attempts == [(0, 0, 1), (0, 0, 2)]


async def test_an_attempt_cancelled_by_a_revocation_keeps_the_earlier_attempts() -> None:
    """A cancelled attempt keeps its earlier attempts: fetched again, it does not restart at 1."""
    offsets, gated = FinishedOffsets(), Gated(retries={(0, 0): 0.0})
    scheduler = Scheduler(offsets, runners=1)
    async with runners(scheduler, gated, 1):
        scheduler.submit(TP, batch_of(offsets, TP, ["a"]))
        gated.open((0, 0))
        await gated.until(lambda: len(gated.attempts) == 1)
        gated.gates[(0, 0)] = asyncio.Event()  # attempt 2 hangs
        await gated.until(lambda: len(gated.attempts) == 2)
        assert await scheduler.quiesce([TP], 0, asyncio.Event()) is False
        assert gated.cancelled == [(0, 0)]
        back_again(scheduler, offsets)
        await gated.until(lambda: len(gated.attempts) == 3)
        await scheduler.drain(0, asyncio.Event())

    assert gated.attempts[2][2] > 1
