"""The drills' check: from the journal of tests/slow_handlers.py, count lost events, duplicates
and attempts on one event that overlapped in two worker processes."""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

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
