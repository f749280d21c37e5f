"""Which job runs when: one at a time per lane, `max_in_flight` at once, retries on timers.

A job is ready when it heads its lane (its partition and ordering key), so one recording's
events never overtake each other while other recordings proceed. Retries wait on timers, not
on a task, so a long backoff holds up nothing but its own lane.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Hashable
from typing import Protocol

import structlog
from aiokafka import TopicPartition

from consumer.engine.delivery import Job
from consumer.engine.handover import CANCELLED_WAIT
from consumer.engine.lanes import Lanes, ReadyQueue
from consumer.engine.offsets import OffsetTracker


class Attempts(Protocol):
    """What runs a job's attempts: `Delivery`, or a stand-in in tests."""

    async def attempt(self, job: Job) -> float | None: ...


class Scheduler:
    """Lanes, the ready queue, retry timers and the offsets they finish."""

    def __init__(self, on_finished: Callable[[], None]) -> None:
        self.offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self._on_finished = on_finished
        self._lanes: Lanes[tuple[TopicPartition, Hashable], Job] = Lanes()
        self._ready: ReadyQueue[Job] = ReadyQueue()
        self._timers: dict[Job, asyncio.TimerHandle] = {}
        self._generation: defaultdict[TopicPartition, int] = defaultdict(int)
        """Bumped when a partition is revoked, so its old jobs are recognised and ignored."""
        self._revoking: set[TopicPartition] = set()
        self._executing: Counter[TopicPartition] = Counter()
        self._running: dict[Job, asyncio.Task[None]] = {}
        self._abandoned: set[Job] = set()
        """Jobs cancelled because their partition went to another worker."""
        self._carried: dict[tuple[TopicPartition, int], Job] = {}
        """Retry progress of revoked messages, resumed if their partition comes back here:
        otherwise every rebalance would restart a failing message's attempts."""
        self._progress = asyncio.Event()
        self._closing = False
        self._log = structlog.get_logger("consumer.scheduler")

    @property
    def running(self) -> int:
        """Handler attempts running now."""
        return len(self._running)

    def generation(self, tp: TopicPartition) -> int:
        return self._generation[tp]

    def submit(self, job: Job) -> None:
        """Queue a job whose offset was added; it runs once it heads its lane."""
        earlier = (
            self._carried.pop((job.lane[0], job.record.offset), None) if self._carried else None
        )
        if earlier is not None:
            job.resume(earlier)
        if self._lanes.push(job.lane, job):
            self._ready.put(job)

    def finish_now(self, tp: TopicPartition, offset: int) -> None:
        """A message that needs no handler (skipped by policy) is finished as it is fetched."""
        self.offsets.finish(tp, offset)
        self._on_finished()

    async def work(self, delivery: Attempts) -> None:
        """One of the `max_in_flight` tasks: run ready jobs until cancelled."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        while True:
            job = await self._ready.get()
            tp = job.lane[0]
            if self._closing or tp in self._revoking or job.generation != self._generation[tp]:
                continue
            self._executing[tp] += 1
            self._running[job] = task
            try:
                delay = await delivery.attempt(job)
            except asyncio.CancelledError:
                if job not in self._abandoned:
                    raise
                # Cancelled by a revocation: unless a shutdown asked too, this task serves on.
                self._abandoned.discard(job)
                if task.uncancel():
                    raise
                continue
            except Exception:
                # A bug in the engine, not in a handler: keep the message (uncommitted) and
                # try it again rather than lose it or take the worker down.
                self._log.exception("engine error; retrying message", offset=job.record.offset)
                delay = 1.0
            finally:
                del self._running[job]
                self._executing[tp] -= 1
                self._progress.set()
            if delay is not None:
                self._timers[job] = loop.call_later(delay, self._requeue, job)
            else:
                self._finish(job, tp)

    def _requeue(self, job: Job) -> None:
        del self._timers[job]
        self._ready.put(job)

    def _finish(self, job: Job, tp: TopicPartition) -> None:
        if job.generation != self._generation[tp]:
            return  # revoked meanwhile; the partition's next owner has it
        self.offsets.finish(tp, job.record.offset)
        self._on_finished()
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
        self._cancel_timers(lambda job: job.lane[0] in partitions)

        def idle() -> bool:
            return all(self._executing[tp] == 0 for tp in partitions)

        if await self._wait_until(idle, grace, force):
            return True
        # Left running, a handler would hold its slot and could run at the same time as the
        # next owner's, or as this worker's own if the partition comes back.
        for job, task in self._running.items():
            if job.lane[0] in partitions:
                self._abandoned.add(job)
                task.cancel()
        if not await self._wait_until(idle, CANCELLED_WAIT, asyncio.Event()):
            self._log.error(
                "handlers ignored cancellation; handing their partitions over regardless",
                running=sum(self._executing[tp] for tp in partitions),
            )
        return False

    def forget(self, partitions: Collection[TopicPartition]) -> None:
        """Hand revoked partitions over: their unfinished work belongs to the next owner."""
        for tp in partitions:
            self._generation[tp] += 1
        self.offsets.forget(partitions)
        for job in self._lanes.drop(lambda lane: lane[0] in partitions):
            if job.attempts:
                self._carried[(job.lane[0], job.record.offset)] = job
        self._revoking -= set(partitions)

    def assigned(self, partitions: Collection[TopicPartition]) -> None:
        """Drop the carried retry progress of partitions that went to another worker."""
        self._carried = {key: job for key, job in self._carried.items() if key[0] in partitions}

    async def drain(self, grace: float, force: asyncio.Event) -> None:
        """Stop starting work; give running handlers `grace` seconds to finish."""
        self._closing = True
        self._cancel_timers(lambda job: True)
        if not await self._wait_until(lambda: self._executing.total() == 0, grace, force):
            self._log.warning(
                "cancelling handlers still running; their messages will be redelivered",
                running=self._executing.total(),
            )

    def _cancel_timers(self, which: Callable[[Job], bool]) -> None:
        for job in [job for job in self._timers if which(job)]:
            self._timers.pop(job).cancel()

    async def _wait_until(
        self, done: Callable[[], bool], seconds: float, force: asyncio.Event
    ) -> bool:
        forced = asyncio.ensure_future(force.wait())
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
            forced.cancel()
