"""Deadlines for many waits of one length (the ingress's ``ack_timeout``), expired by one
periodic sweep rather than a timer each.

``asyncio.timeout`` per callback costs a timer handle pushed on the loop's heap and cancelled
again (some ten microseconds under load, the heap holding thousands of cancelled handles). Waits
of one length end in the order they began, so a dict in arrival order and a task that wakes
every `SWEEP_EVERY` seconds expire them: a wait is cancelled within `SWEEP_EVERY` of its
deadline, as `asyncio.timeout` would cancel it (cancel, then `uncancel` in the waiting task).

A finished wait leaves the dict at once: kept until the sweep, it would keep its task, and
through the task's result the whole request, alive 50 ms longer: some 600 requests' objects at
once under load, a cost docs/ingress.md ("Measured") puts a figure on.
"""

from __future__ import annotations

import asyncio
import time

SWEEP_EVERY = 0.05
"""Seconds between sweeps: how late past its deadline a wait may be cancelled."""


class Deadlines:
    """Waits of `seconds` each, named by the number `start` returns; the sweeping task runs
    only while some wait is unfinished."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._waits: dict[int, tuple[float, asyncio.Task[object], int]] = {}
        """Unfinished waits, oldest first: (deadline, task, its cancelling() at the start)."""
        self._expired: dict[int, tuple[asyncio.Task[object], int]] = {}
        """Waits the sweep cancelled, until their task's ``except CancelledError`` asks."""
        self._started = 0
        self._sweeping: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> int:
        """A deadline `seconds` from now for the current task; `finish` it when the wait ends."""
        # The loop is passed: Python 3.11 finds the running one with a getpid() system call.
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None, "within a task"
        wait = self._started = self._started + 1
        self._waits[wait] = (time.monotonic() + self._seconds, task, task.cancelling())
        if self._sweeping is None:
            self._sweeping = loop.create_task(self._sweep())
        return wait

    def finish(self, wait: int) -> None:
        if self._waits.pop(wait, None) is None:  # expired: drop it if `timed_out` was not asked
            self._expired.pop(wait, None)

    def timed_out(self, wait: int) -> bool:
        """In the waiting task's ``except CancelledError``: True when the cancellation was this
        deadline's alone (re-raise otherwise: the task itself is being cancelled)."""
        expired = self._expired.pop(wait, None)
        if expired is None:
            return False
        task, cancelling = expired
        return task.uncancel() <= cancelling

    async def _sweep(self) -> None:
        waits = self._waits
        try:
            while waits:
                await asyncio.sleep(SWEEP_EVERY)
                now = time.monotonic()
                overdue = []
                for wait, (at, _, _) in waits.items():
                    if at > now:
                        break
                    overdue.append(wait)
                for wait in overdue:
                    _, task, cancelling = waits.pop(wait)
                    self._expired[wait] = (task, cancelling)
                    task.cancel()
        finally:
            self._sweeping = None
