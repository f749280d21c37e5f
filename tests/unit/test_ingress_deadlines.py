"""Deadlines expired by one sweep: a late wait is cancelled as asyncio.timeout would cancel it,
a finished one never is, and a task cancelled from outside stays cancelled."""

from __future__ import annotations

import asyncio
import weakref

import pytest

from consumer.ingress.deadlines import SWEEP_EVERY, Deadlines

WAIT = 0.2
ENOUGH = 10.0
"""Seconds a test waits for what should take WAIT + SWEEP_EVERY at most."""


async def wait_on(deadlines: Deadlines, future: asyncio.Future[None]) -> str:
    """Wait for `future` under a deadline; how the wait ended."""
    wait = deadlines.start()
    try:
        await future
    except asyncio.CancelledError:
        if not deadlines.timed_out(wait):
            raise
        return "timed out"
    finally:
        deadlines.finish(wait)
    return "done"


async def test_a_wait_past_its_deadline_ends_as_timed_out_and_uncancelled() -> None:
    """A wait nobody answers ends "timed out" within WAIT + SWEEP_EVERY (give or take the loop),
    and its task is no longer being cancelled: it can go on (to the spool) undisturbed."""
    deadlines = Deadlines(WAIT)
    loop = asyncio.get_running_loop()

    async def waits_then_goes_on() -> tuple[str, int, float]:
        started = loop.time()
        outcome = await wait_on(deadlines, loop.create_future())
        took = loop.time() - started
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)  # a cancellation still pending would be raised here
        return outcome, task.cancelling(), took

    outcome, cancelling, took = await asyncio.wait_for(waits_then_goes_on(), ENOUGH)
    assert (outcome, cancelling) == ("timed out", 0)
    assert WAIT <= took < WAIT + SWEEP_EVERY + 1.0


async def test_a_finished_wait_is_never_cancelled_by_its_passed_deadline() -> None:
    """A finishes in time and then waits on something else; B, started after A, times out:
    by then A's deadline has passed too, and A is still waiting, not cancelled."""
    deadlines = Deadlines(WAIT)
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[None] = loop.create_future()
    later: asyncio.Future[None] = loop.create_future()

    async def finishes_then_waits() -> str:
        outcome = await wait_on(deadlines, answer)
        await later
        return outcome

    first = asyncio.create_task(finishes_then_waits())
    await asyncio.sleep(0)
    answer.set_result(None)
    second = await asyncio.wait_for(wait_on(deadlines, loop.create_future()), ENOUGH)

    assert second == "timed out"
    assert not first.done()
    later.set_result(None)
    assert await first == "done"


async def test_a_task_cancelled_from_outside_stays_cancelled() -> None:
    """Cancelling the waiting task (shutdown) raises CancelledError out of the wait, as
    before the deadline existed; the deadline does not swallow it."""
    deadlines = Deadlines(WAIT)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(wait_on(deadlines, loop.create_future()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_finished_wait_keeps_nothing_of_its_task_alive() -> None:
    """Once a wait is finished, its task (and so the request it answered) is freed as soon as
    nothing else holds it, not when the sweep next runs: the deadlines keep no reference."""
    deadlines = Deadlines(ENOUGH)
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[None] = loop.create_future()
    task = asyncio.create_task(wait_on(deadlines, answer))
    await asyncio.sleep(0)
    answer.set_result(None)
    assert await task == "done"
    gone = weakref.ref(task)
    del task
    await asyncio.sleep(0)  # off the loop's handle that woke us, which holds the task
    assert gone() is None
