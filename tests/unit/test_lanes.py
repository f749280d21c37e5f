"""Key ordering as a pure data structure: no broker, no event loop."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from consumer.engine.lanes import Lanes, ReadyQueue


def test_same_key_waits_for_the_head() -> None:
    """A second job for a key is not runnable until the first is retired."""
    lanes: Lanes[str, int] = Lanes()
    assert lanes.push("a", 1) is True
    assert lanes.push("a", 2) is False
    assert lanes.push("b", 3) is True
    assert lanes.pop("a") == 2
    assert lanes.pop("a") is None
    assert len(lanes) == 1


def test_drop_forgets_matching_lanes() -> None:
    """Dropping a partition's lanes discards the jobs queued behind their heads, nothing else."""
    lanes: Lanes[tuple[int, str], int] = Lanes()
    lanes.push((0, "a"), 1)
    lanes.push((0, "a"), 2)
    lanes.push((1, "a"), 3)
    assert lanes.drop(lambda key: key[0] == 0) == [2]  # the head runs: not queued
    assert lanes.pop((0, "a")) is None
    assert lanes.pop((1, "a")) is None


@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=80))
def test_per_key_order_is_arrival_order(ops: list[tuple[str, bool]]) -> None:
    """Whatever interleaving of arrivals and completions, each key runs its jobs in order."""
    lanes: Lanes[str, int] = Lanes()
    running: dict[str, int] = {}
    ran: dict[str, list[int]] = {}
    for n, (key, complete) in enumerate(ops):
        if complete and key in running:
            ran.setdefault(key, []).append(running.pop(key))
            nxt = lanes.pop(key)
            if nxt is not None:
                running[key] = nxt
        elif lanes.push(key, n):
            assert key not in running
            running[key] = n
    for order in ran.values():
        assert order == sorted(order)


async def test_ready_queue_hands_out_in_order() -> None:
    """Items put before anyone waits come out first in, first out."""
    queue: ReadyQueue[int] = ReadyQueue()
    for n in range(3):
        queue.put(n)
    assert [await queue.get() for _ in range(3)] == [0, 1, 2]


async def test_ready_queue_wakes_one_waiter_per_item() -> None:
    """With five tasks waiting, one item is taken by exactly one of them; the rest keep waiting."""
    queue: ReadyQueue[str] = ReadyQueue()
    got: list[str] = []

    async def take() -> None:
        got.append(await queue.get())

    tasks = [asyncio.create_task(take()) for _ in range(5)]
    await asyncio.sleep(0)  # let every task reach its wait
    queue.put("job")
    await asyncio.wait(tasks, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    for _ in range(3):
        await asyncio.sleep(0)  # room for a second taker, if the item were handed out twice
    assert got == ["job"]
    assert sum(task.done() for task in tasks) == 1
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_ready_queue_passes_the_wakeup_on_when_the_woken_task_is_cancelled() -> None:
    """A waiter woken for an item but cancelled before it ran leaves the item to another."""
    queue: ReadyQueue[str] = ReadyQueue()
    first = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put("job")  # wakes `first`, which has not run yet
    first.cancel()
    async with asyncio.timeout(5):
        assert await second == "job"
    assert first.cancelled()
