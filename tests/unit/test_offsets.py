"""Offset bookkeeping: pure units, no broker."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.engine.offsets import Batch, OffsetTracker


def reference_commit_point(offsets: list[int], finished: set[int]) -> int | None:
    """The answer by definition: one past the longest finished prefix, if any."""
    point = None
    for offset in offsets:
        if offset not in finished:
            break
        point = offset + 1
    return point


def test_commit_point_waits_for_the_gap() -> None:
    """An offset finishing before its predecessor does not move the commit point past the gap."""
    tracker: OffsetTracker[str] = OffsetTracker()
    batch = tracker.add("p0", [10, 11, 12])
    assert tracker.finish(batch, 2) is False
    tracker.finish(batch, 0)
    assert tracker.uncommitted() == {"p0": 11}
    assert tracker.finish(batch, 1) is True  # the batch is done
    assert tracker.uncommitted() == {"p0": 13}


def test_committed_points_are_not_repeated() -> None:
    """After a commit is recorded, the same point is not reported again."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.finish(tracker.add("p0", [0]), 0)
    tracker.committed(tracker.uncommitted())
    assert tracker.uncommitted() == {}
    assert tracker.in_flight() == 0


def test_forget_drops_a_partition() -> None:
    """A revoked partition's unfinished offsets no longer count as in flight, and finishing
    one of its jobs afterwards changes nothing."""
    tracker: OffsetTracker[str] = OffsetTracker()
    revoked = tracker.add("p0", [5])
    tracker.add("p1", [7])
    tracker.forget(["p0"])
    assert tracker.in_flight() == 1
    assert tracker.in_flight(["p0"]) == 0
    assert revoked.live is False
    tracker.finish(revoked, 0)
    assert tracker.uncommitted() == {}


@given(
    st.lists(st.integers(min_value=0, max_value=10_000), unique=True, max_size=60).map(sorted),
    st.data(),
)
def test_any_completion_order_matches_the_reference(
    offsets: list[int], data: st.DataObject
) -> None:
    """Whatever batches the offsets come in and whatever order they finish in, the commit
    point is the contiguous finished prefix."""
    tracker: OffsetTracker[int] = OffsetTracker()
    where: dict[int, tuple[Batch, int]] = {}
    start = 0
    while start < len(offsets):
        end = start + data.draw(st.integers(1, len(offsets) - start))
        batch = tracker.add(0, offsets[start:end])
        for index, offset in enumerate(offsets[start:end]):
            where[offset] = (batch, index)
        start = end
    order = data.draw(st.permutations(offsets))
    finished: set[int] = set()
    for offset in order[: data.draw(st.integers(0, len(order)))]:
        tracker.finish(*where[offset])
        finished.add(offset)
        expected = reference_commit_point(offsets, finished)
        assert tracker.uncommitted().get(0) == expected
        assert tracker.in_flight() == len(offsets) - len(finished)


def test_position_passes_offsets_that_are_not_records() -> None:
    """Once all fetched offsets finish, the consumer's position (past a marker) is the point."""
    tracker: OffsetTracker[str] = OffsetTracker()
    batch = tracker.add("p0", [0, 1])
    tracker.reached("p0", 3)  # offset 2 is a transaction marker: never a record
    tracker.finish(batch, 0)
    assert tracker.uncommitted() == {"p0": 1}
    tracker.finish(batch, 1)
    assert tracker.uncommitted() == {"p0": 2}
    tracker.reached("p0", 3)
    assert tracker.uncommitted() == {"p0": 3}
    tracker.reached("p0", 2)
    assert tracker.uncommitted() == {"p0": 3}


def test_an_empty_batch_changes_nothing() -> None:
    """A batch without records neither moves the commit point nor counts as in flight."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.finish(tracker.add("p0", [4]), 0)
    tracker.add("p0", [])
    assert tracker.uncommitted() == {"p0": 5}
    assert tracker.in_flight() == 0
