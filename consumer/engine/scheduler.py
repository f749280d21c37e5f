"""Which job runs when: one at a time per lane, `max_in_flight` at once, retries on timers.

A job is ready when it heads its lane (its partition and ordering key), so one recording's
events never overtake each other while other recordings proceed. Retries wait on timers, not
on a task, so a long backoff holds up nothing but its own lane.

`max_in_flight` runner tasks take ready jobs and await their handlers directly: a handler that
finishes without suspending runs with no task switch and no task created, and one that awaits
I/O holds only its runner while the others go on. (Driving coroutines by hand instead would
leave a handler that suspends in a different task than the one it started in, and
``asyncio.timeout`` or httpx's cancel scopes, entered in its first step, would then cancel or
check the wrong task.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Hashable, Sequence
from typing import Any, Protocol

import structlog
from aiokafka import TopicPartition

from consumer.engine.delivery import RetryState
from consumer.engine.intake import Job, Undecodable
from consumer.engine.lanes import Lanes, ReadyQueue
from consumer.engine.offsets import Batch
from consumer.settings.handover import CANCELLED_WAIT

Queued = Job[Any] | Undecodable
"""What the scheduler queues and runs: a job for its handlers, or an undecodable message for the
dead-letter topic."""


class Attempts(Protocol):
    """What runs a job's attempts: `Delivery`, or a stand-in in tests."""

    async def attempt(self, work: Queued) -> float | None: ...


class Finishes(Protocol):
    """Where finished jobs' offsets go: the `Committer`, or a stand-in in tests."""

    def finish(self, batch: Batch, index: int) -> None: ...


class Scheduler:
    """Lanes, the ready queue, retry timers and the runner tasks."""

    def __init__(self, offsets: Finishes, runners: int) -> None:
        self._offsets = offsets
        self._lanes: Lanes[tuple[TopicPartition, Hashable], Queued] = Lanes()
        self._ready: ReadyQueue[Queued] = ReadyQueue()
        self._timers: dict[Queued, asyncio.TimerHandle] = {}
        self._revoking: set[TopicPartition] = set()
        self._current: list[Queued | None] = [None] * runners
        """What each runner is running now."""
        self._tasks: list[asyncio.Task[None] | None] = [None] * runners
        self._abandoned: set[Queued] = set()
        """Jobs cancelled because their partition went to another worker."""
        self._carried: dict[tuple[TopicPartition, int], RetryState] = {}
        """Retry progress of revoked messages, resumed if their partition comes back here:
        otherwise every rebalance would restart a failing message's attempts."""
        self._progress = asyncio.Event()
        self._watching = 0
        self._closing = False
        self._log = structlog.get_logger("consumer.scheduler")

    @property
    def running(self) -> int:
        """Handler attempts running now."""
        return sum(work is not None for work in self._current)

    def submit(self, tp: TopicPartition, jobs: Sequence[Queued]) -> None:
        """Queue a fetched batch's jobs of `tp`, in offset order, already added to the offsets.

        Each job goes behind its lane's last; those heading their lanes are ready at once.
        """
        lanes, carried = self._lanes, self._carried
        ready = []
        for job in jobs:
            if carried:
                job.retry = carried.pop((tp, job.record.offset), None)
            lane = job.lane = (tp, job.key)
            if lanes.push(lane, job):
                ready.append(job)
        self._ready.put_many(ready)

    async def runner(self, delivery: Attempts, slot: int) -> None:
        """Runner number `slot`: run ready jobs until cancelled."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._tasks[slot] = task
        ready, current, revoking = self._ready, self._current, self._revoking
        while True:
            job = ready.take() or await ready.get()
            batch = job.batch
            if not batch.live or self._closing or (revoking and batch.partition in revoking):
                self._carry(job)
                continue
            current[slot] = job
            try:
                delay = await delivery.attempt(job)
            except asyncio.CancelledError:
                if job not in self._abandoned:
                    raise
                # Cancelled by a revocation: unless a shutdown asked too, this task serves on.
                self._abandoned.discard(job)
                self._carry(job)
                if task.uncancel():
                    raise
                continue
            except Exception:
                # A bug in the engine, not in a handler: keep the message (uncommitted) and
                # try it again rather than lose it or take the worker down.
                self._log.exception("engine error; retrying message", offset=job.record.offset)
                delay = 1.0
            finally:
                current[slot] = None
                if self._watching:
                    self._progress.set()
            if delay is None:
                self._finish(job)
            elif not batch.live or (revoking and batch.partition in revoking):
                self._carry(job)  # its partition is being handed over: no timer here
            else:
                self._timers[job] = loop.call_later(delay, self._requeue, job)

    def _requeue(self, job: Queued) -> None:
        del self._timers[job]
        self._ready.put(job)

    def _finish(self, job: Queued) -> None:
        batch = job.batch
        if not batch.live:
            return  # revoked meanwhile; the partition's next owner has it
        self._offsets.finish(batch, job.index)
        following = self._lanes.pop(job.lane)
        if following is not None:
            self._ready.put(following)

    async def quiesce(
        self, partitions: Collection[TopicPartition], grace: float, force: asyncio.Event
    ) -> bool:
        """Start nothing more for `partitions`, drop their retry waits, and wait for what runs.

        When `grace` runs out or `force` is set first, the attempts still running are cancelled
        (their messages go to the partition's next owner), they get `CANCELLED_WAIT` seconds to
        unwind, and the result is False.
        """
        self._revoking |= set(partitions)
        for job in self._cancel_timers(lambda job: job.batch.partition in partitions):
            self._carry(job)

        def idle() -> bool:
            return not any(w is not None and w.batch.partition in partitions for w in self._current)

        if await self._wait_until(idle, grace, force):
            return True
        # Left running, a handler would hold its slot and could run at the same time as the
        # next owner's, or as this worker's own if the partition comes back.
        for slot, work in enumerate(self._current):
            task = self._tasks[slot]
            if work is not None and task is not None and work.batch.partition in partitions:
                self._abandoned.add(work)
                task.cancel()
        if not await self._wait_until(idle, CANCELLED_WAIT, asyncio.Event()):
            self._log.error(
                "handlers ignored cancellation; handing their partitions over regardless",
                running=self.running,
            )
        return False

    def forget(self, partitions: Collection[TopicPartition]) -> None:
        """Hand revoked partitions over: their unfinished work belongs to the next owner."""
        for job in self._lanes.drop(lambda lane: lane[0] in partitions):
            self._carry(job)
        for job in self._ready.drop(lambda job: job.batch.partition in partitions):
            self._carry(job)
        self._revoking -= set(partitions)

    def assigned(self, partitions: Collection[TopicPartition]) -> None:
        """Drop the carried retry progress of partitions that went to another worker."""
        self._carried = {key: job for key, job in self._carried.items() if key[0] in partitions}

    async def drain(self, grace: float, force: asyncio.Event) -> None:
        """Stop starting work; give running handlers `grace` seconds to finish."""
        self._closing = True
        self._cancel_timers(lambda job: True)
        if not await self._wait_until(lambda: not self.running, grace, force):
            self._log.warning(
                "cancelling handlers still running; their messages will be redelivered",
                running=self.running,
            )

    def _carry(self, job: Queued) -> None:
        if job.retry is not None:
            self._carried[(job.batch.partition, job.record.offset)] = job.retry

    def _cancel_timers(self, which: Callable[[Queued], bool]) -> list[Queued]:
        cancelled = [job for job in self._timers if which(job)]
        for job in cancelled:
            self._timers.pop(job).cancel()
        return cancelled

    async def _wait_until(
        self, done: Callable[[], bool], seconds: float, force: asyncio.Event
    ) -> bool:
        forced = asyncio.ensure_future(force.wait())
        self._watching += 1
        try:
            async with asyncio.timeout(seconds):
                while not done():
                    self._progress.clear()
                    progress = asyncio.ensure_future(self._progress.wait())
                    await asyncio.wait({progress, forced}, return_when=asyncio.FIRST_COMPLETED)
                    progress.cancel()
                    if forced.done():
                        return False
            return True
        except TimeoutError:
            return False
        finally:
            self._watching -= 1
            forced.cancel()
