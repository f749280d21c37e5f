"""Deadlines for many waits of one length (the ingress's ``ack_timeout``), expired by one
periodic sweep rather than a timer each.

``asyncio.timeout`` per callback costs a timer handle pushed on the loop's heap and cancelled
again (some ten microseconds under load, the heap holding thousands of cancelled handles). Waits
of one length end in the order they began, so a queue in arrival order and a task that wakes
every `SWEEP_EVERY` seconds expire them: a wait is cancelled within `SWEEP_EVERY` of its
deadline, as `asyncio.timeout` would cancel it (cancel, then `uncancel` in the waiting task).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

SWEEP_EVERY = 0.05
"""Seconds between sweeps: how late past its deadline a wait may be cancelled."""


class Deadline:
    """One wait: `finish` it when it ends; `expired` says the sweep cancelled its task."""

    __slots__ = ("at", "cancelling", "expired", "finished", "task")

    def __init__(self, at: float, task: asyncio.Task[object]) -> None:
        self.at = at
        self.task = task
        self.cancelling = task.cancelling()
        self.expired = False
        self.finished = False

    def timed_out(self) -> bool:
        """In the waiting task's ``except CancelledError``: True when the cancellation was this
        deadline's alone (re-raise otherwise: the task itself is being cancelled)."""
        return self.expired and self.task.uncancel() <= self.cancelling


class Deadlines:
    """Waits of `seconds` each; the sweeping task runs only while some wait is unfinished."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._waits: deque[Deadline] = deque()
        self._sweeping: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> Deadline:
        """A deadline `seconds` from now for the current task."""
        # The loop is passed: Python 3.11 finds the running one with a getpid() system call.
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None, "within a task"
        deadline = Deadline(time.monotonic() + self._seconds, task)
        self._waits.append(deadline)
        if self._sweeping is None:
            self._sweeping = loop.create_task(self._sweep())
        return deadline

    async def _sweep(self) -> None:
        waits = self._waits
        try:
            while waits:
                await asyncio.sleep(SWEEP_EVERY)
                now = time.monotonic()
                while waits and (waits[0].finished or waits[0].at <= now):
                    deadline = waits.popleft()
                    if not deadline.finished:
                        deadline.expired = deadline.finished = True
                        deadline.task.cancel()
        finally:
            self._sweeping = None
