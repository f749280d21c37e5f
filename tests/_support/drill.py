"""The drills' check: from the journal of tests/_support/slow_handlers.py,
count lost events, duplicates
and attempts on one event that overlapped in two worker processes."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from consumer.cli.samples import recording_event
from tests._support.kafka_helpers import (
    committed_and_end,
)

Event = tuple[int, int]
"""(partition, offset)."""


@dataclass(frozen=True)
class Attempt:
    pid: int
    start: float
    stop: float
    """When it ended or was cancelled; infinity if the journal never says (process killed)."""
    finished: bool


def attempts(
    journal: Path, killed: Mapping[int, float] | None = None
) -> dict[Event, list[Attempt]]:
    """Every attempt per event, pairing each start with the next end or cancel of its process.

    An attempt never closed stops when its process was killed (`killed`: pid to the
    time.monotonic() its death was seen), or never.
    """
    open_: dict[tuple[int, Event], float] = {}
    found: defaultdict[Event, list[Attempt]] = defaultdict(list)
    lines = journal.read_text().splitlines() if journal.exists() else []
    for line in lines:
        pid_text, phase, partition, offset, at = line.split()
        pid, event, t = int(pid_text), (int(partition), int(offset)), float(at)
        if phase == "start":
            open_[(pid, event)] = t
        else:
            found[event].append(Attempt(pid, open_.pop((pid, event)), t, phase == "end"))
    for (pid, event), started in open_.items():
        found[event].append(Attempt(pid, started, (killed or {}).get(pid, math.inf), False))
    return dict(found)


@dataclass(frozen=True)
class Report:
    name: str
    produced: int
    handled: int
    """Distinct events some attempt finished."""
    duplicated: int
    """Finished attempts beyond the first, per event."""
    overlapped: int
    """Events with attempts in two processes that ran at the same time."""
    lost: int
    """Produced events no attempt finished."""
    seconds: float

    def line(self) -> str:
        return (
            f"drill {self.name}: produced {self.produced}, handled {self.handled}, "
            f"duplicated {self.duplicated}, overlapped {self.overlapped}, lost {self.lost}, "
            f"{self.seconds:.1f} s"
        )


def check(
    name: str,
    journal: Path,
    produced: Iterable[Event],
    started: float,
    killed: Mapping[int, float] | None = None,
) -> Report:
    """Count what happened to `produced` events; `started` is the drill's time.monotonic()."""
    expected = set(produced)
    by_event = attempts(journal, killed)
    finished = Counter({event: sum(a.finished for a in tries) for event, tries in by_event.items()})
    handled = {event for event, count in finished.items() if count}
    report = Report(
        name=name,
        produced=len(expected),
        handled=len(handled & expected),
        duplicated=sum(count - 1 for count in finished.values() if count > 1),
        overlapped=sum(_overlap(tries) for tries in by_event.values()),
        lost=len(expected - handled),
        seconds=time.monotonic() - started,
    )
    print(f"\n{report.line()}")
    return report


def _overlap(tries: list[Attempt]) -> bool:
    return any(
        a.pid != b.pid and a.start < b.stop and b.start < a.stop
        for i, a in enumerate(tries)
        for b in tries[i + 1 :]
    )


async def eventually(condition: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    """Poll an async `condition` until it holds, failing after `seconds`."""
    deadline = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.2)


def fully_committed(bootstrap: str, topic: str) -> Callable[[], Awaitable[bool]]:
    async def done() -> bool:
        committed, end = await committed_and_end(bootstrap, topic, topic)
        return committed == end

    return done


def log_of(handled: Path) -> str:
    path = handled.with_name(handled.name + ".log")
    return path.read_text() if path.exists() else ""


async def every_offset(bootstrap: str, topic: str) -> set[tuple[int, int]]:
    _, end = await committed_and_end(bootstrap, topic, topic)
    return {(p, o) for p, n in end.items() for o in range(n)}


def events(count: int, keys: int) -> list[tuple[bytes, bytes]]:
    """`count` complete events spread over `keys` Kafka keys, recordingId ``r-<key>-<seq>``."""
    out = []
    for n in range(count):
        key, seq = f"k{n % keys:03d}", n // keys
        recording = recording_event(f"r-{key}-{seq:05d}", f"c-{n}", "complete")
        out.append((key.encode(), msgspec.json.encode(recording)))
    return out
