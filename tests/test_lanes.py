"""Key ordering as a pure data structure: no broker, no event loop."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.engine.lanes import Lanes


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
    """Dropping a partition's lanes discards their queued jobs and nothing else."""
    lanes: Lanes[tuple[int, str], int] = Lanes()
    lanes.push((0, "a"), 1)
    lanes.push((0, "a"), 2)
    lanes.push((1, "a"), 3)
    assert lanes.drop(lambda key: key[0] == 0) == 2
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
