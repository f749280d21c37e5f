"""Worker processes killed, stopped, joined and removed mid-stream: nothing is lost.

These run `recording-consumer run` as child processes against the session's real broker,
with tests/_support/slow_handlers.py:AppendToFile recording what each process handled.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from consumer.cli.produce import produce
from consumer.settings.config import KafkaSettings
from tests._support.drill import check, events
from tests._support.kafka_helpers import (
    committed_and_end,
    exit_status,
    handled_lines,
    handled_records,
    wait_for,
    worker_process,
)

# Short sessions so a killed member is noticed quickly; the broker's minimum is 6 s.
GROUP_TIMING = {"KAFKA__SESSION_TIMEOUT_MS": "6000", "KAFKA__HEARTBEAT_INTERVAL_MS": "500"}


def reached(handled: Path, count: int) -> bool:
    return len(handled_lines(handled)) >= count


def assert_per_key_order(path: Path) -> None:
    """No event is handled before every earlier event of its key was handled at least once."""
    seen: dict[str, set[int]] = {}
    for _, _, recording_id in handled_records(path):
        _, key, seq = recording_id.split("-")
        done = seen.setdefault(key, set())
        if int(seq) not in done:
            assert done == set(range(int(seq))), f"{recording_id} overtook an earlier event"
            done.add(int(seq))


@pytest.mark.drill
async def test_sigkill_at_several_points_loses_nothing(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """Killed with SIGKILL three times mid-stream and restarted: every event handled, all
    committed, and each kill repeats no more than was buffered or uncommitted at the time."""
    started = time.monotonic()
    await create_topic(kafka_bootstrap, unique_name, partitions=3)
    total = 4000
    await produce(KafkaSettings(bootstrap_servers=kafka_bootstrap), unique_name, events(total, 400))
    handled = tmp_path / "handled"
    knobs: dict[str, Any] = {  # settings and handler knobs; Any: until_idle is not among them
        **GROUP_TIMING,
        "ENGINE__MAX_IN_FLIGHT": "20",
        "ENGINE__MAX_BUFFERED": "300",
        "ENGINE__COMMIT_EVERY": "200",
        "ENGINE__FETCH_MAX_RECORDS": "100",
        "TEST_HANDLER_DELAY": "0.002",
        "TEST_JOURNAL_FILE": str(tmp_path / "journal"),
    }
    killed: dict[int, float] = {}
    # Redone after a kill: whatever was fetched and not committed. That is at most the buffer
    # bound plus one fetch (backpressure applies after a fetch) plus what finished since the
    # last commit (a commit is due every 200).
    bound_per_kill = 300 + 100 + 200
    per_kill = []
    for fraction in (0.15, 0.45, 0.75):
        worker = worker_process(kafka_bootstrap, unique_name, handled, **knobs)
        point = int(total * fraction)
        await wait_for(partial(reached, handled, point), 90, f"{point} handled")
        worker.send_signal(signal.SIGKILL)
        assert await exit_status(worker) == -signal.SIGKILL
        killed[worker.pid] = time.monotonic()
        committed, _ = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
        per_kill.append(len(set(handled_lines(handled))) - sum(committed.values()))
    final = worker_process(kafka_bootstrap, unique_name, handled, until_idle=2, **knobs)
    assert await exit_status(final, 120) == 0, (tmp_path / "handled.log").read_text()[-3000:]

    lines = handled_lines(handled)
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert set(lines) == {(p, o) for p, n in end.items() for o in range(n)}, "nothing lost"
    assert committed == end
    duplicates = len(lines) - len(set(lines))
    assert duplicates <= 3 * bound_per_kill
    expected = {(p, o) for p, n in end.items() for o in range(n)}
    report = check("SIGKILL x3", tmp_path / "journal", expected, started, killed)
    assert (report.lost, report.overlapped) == (0, 0)
    print(
        f"\n{total} events, 3 SIGKILLs: {duplicates} handled twice, handled but uncommitted "
        f"at each kill: {per_kill} (bound {bound_per_kill})"
    )


async def test_workers_join_and_leave_while_events_flow(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """Two workers share 6 partitions, a third joins, one leaves: nothing lost, keys in order."""
    await create_topic(kafka_bootstrap, unique_name, partitions=6)
    handled = tmp_path / "handled"
    knobs: dict[str, Any] = {**GROUP_TIMING, "TEST_HANDLER_DELAY": "0.003"}
    stream = events(3000, 60)
    first, second = (worker_process(kafka_bootstrap, unique_name, handled, **knobs) for _ in "ab")
    # A SIGTERM that arrives before the worker installs its handler kills it outright.
    log = tmp_path / "handled.log"
    await wait_for(
        lambda: log.exists() and log.read_text().count('"worker started"') == 2,
        90,
        "both workers started",
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        third = None
        for n, (key, value) in enumerate(stream):
            await producer.send(unique_name, value, key=key)
            if n % 100 == 99:
                await producer.flush()
                await asyncio.sleep(0.1)  # paces the stream over about 3 s
            if n == 1000:
                third = worker_process(kafka_bootstrap, unique_name, handled, **knobs)
            if n == 2000:
                # On a loaded machine the third may still be starting: it must have joined
                # before the first leaves, or the group never has three members.
                await wait_for(
                    lambda: log.read_text().count('"worker started"') == 3, 90, "a third worker"
                )
                first.send_signal(signal.SIGTERM)
        await producer.flush()
    finally:
        await producer.stop()
    assert await exit_status(first) == 0
    expected = {f"r-k{n % 60:03d}-{n // 60:05d}" for n in range(len(stream))}
    await wait_for(
        lambda: {rid for _, _, rid in handled_records(handled)} >= expected, 120, "every event"
    )
    assert third is not None
    for worker in (second, third):
        worker.send_signal(signal.SIGTERM)
    for worker in (second, third):
        assert await exit_status(worker) == 0

    assert_per_key_order(handled)
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end
    assert sum(end.values()) == len(stream)
    # A hand-over commits what finished first: at most what was running can be handled again.
    repeats = sum(n - 1 for n in Counter(handled_lines(handled)).values())
    assert repeats <= 2 * 100, "more repeats than two rebalances' worth of in-flight handlers"
    print(f"\n3000 events through 2 rebalances: {repeats} handled twice")


@pytest.mark.drill
async def test_sigterm_lets_running_handlers_finish_and_commits_them(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """SIGTERM with ten 2-second handlers running: they finish, are committed, exit 0."""
    began = time.monotonic()
    journal = tmp_path / "journal"
    await create_topic(kafka_bootstrap, unique_name)
    await produce(KafkaSettings(bootstrap_servers=kafka_bootstrap), unique_name, events(30, 30))
    started, handled, later = tmp_path / "started", tmp_path / "handled", tmp_path / "later"
    worker = worker_process(
        kafka_bootstrap,
        unique_name,
        handled,
        ENGINE__MAX_IN_FLIGHT="10",
        TEST_HANDLER_DELAY="2",
        TEST_STARTED_FILE=str(started),
        TEST_JOURNAL_FILE=str(journal),
    )
    await wait_for(lambda: len(handled_lines(started)) == 10, 60, "ten handlers running")
    signalled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert await exit_status(worker) == 0
    assert time.monotonic() - signalled < 10
    assert sorted(handled_lines(handled)) == sorted(handled_lines(started))
    committed, _ = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == {0: 10}

    restart = worker_process(
        kafka_bootstrap, unique_name, later, until_idle=1, TEST_JOURNAL_FILE=str(journal)
    )
    assert await exit_status(restart, 90) == 0
    assert sorted(o for _, o in handled_lines(later)) == list(range(10, 30))
    report = check("SIGTERM with 2 s handlers", journal, {(0, o) for o in range(30)}, began)
    assert (report.lost, report.duplicated, report.overlapped) == (0, 0, 0)


@pytest.mark.drill
@pytest.mark.parametrize("how", ["second signal", "grace period"])
async def test_stuck_handlers_are_cancelled_and_redelivered(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
    how: str,
) -> None:
    """A second SIGTERM, or the grace period running out, cancels handlers; nothing is lost."""
    began = time.monotonic()
    journal = tmp_path / "journal"
    await create_topic(kafka_bootstrap, unique_name)
    await produce(KafkaSettings(bootstrap_servers=kafka_bootstrap), unique_name, events(5, 5))
    started, handled, later = tmp_path / "started", tmp_path / "handled", tmp_path / "later"
    worker = worker_process(
        kafka_bootstrap,
        unique_name,
        handled,
        ENGINE__SHUTDOWN_GRACE="250" if how == "second signal" else "1",
        TEST_HANDLER_DELAY="600",
        TEST_STARTED_FILE=str(started),
        TEST_JOURNAL_FILE=str(journal),
    )
    await wait_for(lambda: len(handled_lines(started)) == 5, 60, "five handlers running")
    signalled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    if how == "second signal":
        log = tmp_path / "handled.log"
        await wait_for(lambda: "stopping: finishing" in log.read_text(), 30, "first signal seen")
        worker.send_signal(signal.SIGTERM)
    assert await exit_status(worker) == 0
    assert time.monotonic() - signalled < 15
    assert handled_lines(handled) == []
    committed, _ = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == {0: 0}

    restart = worker_process(
        kafka_bootstrap, unique_name, later, until_idle=1, TEST_JOURNAL_FILE=str(journal)
    )
    assert await exit_status(restart, 90) == 0
    assert sorted(o for _, o in handled_lines(later)) == list(range(5))
    report = check(f"SIGTERM, 600 s handlers, {how}", journal, {(0, o) for o in range(5)}, began)
    assert (report.lost, report.duplicated, report.overlapped) == (0, 0, 0)


async def test_handler_outliving_the_rebalance_wait_is_cancelled(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """When a second worker joins, a handler still running after the grace is cancelled at the
    hand-over (not left running beside the partition's next owner); both stop cleanly."""
    await create_topic(kafka_bootstrap, unique_name, partitions=2)
    await produce(KafkaSettings(bootstrap_servers=kafka_bootstrap), unique_name, events(1, 1))
    started, cancelled = tmp_path / "started", tmp_path / "cancelled"
    knobs: dict[str, Any] = {  # settings and handler knobs; Any: until_idle is not among them
        **GROUP_TIMING,
        "ENGINE__SHUTDOWN_GRACE": "1",
        "TEST_HANDLER_DELAY": "600",
        "TEST_STARTED_FILE": str(started),
        "TEST_CANCELLED_FILE": str(cancelled),
    }
    first = worker_process(kafka_bootstrap, unique_name, tmp_path / "first", **knobs)
    await wait_for(lambda: len(handled_lines(started)) == 1, 60, "the handler running")
    joined = time.monotonic()
    second = worker_process(kafka_bootstrap, unique_name, tmp_path / "second", **knobs)
    await wait_for(lambda: len(handled_lines(cancelled)) >= 1, 60, "the handler cancelled")
    assert time.monotonic() - joined < 30, "cancelled at the rebalance, not at some later stop"
    for worker in (first, second):
        worker.send_signal(signal.SIGTERM)
    assert await exit_status(first) == 0
    assert await exit_status(second) == 0
    committed, _ = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert sum(committed.values()) == 0, "the unfinished message was not committed"
