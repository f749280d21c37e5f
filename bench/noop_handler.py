"""A handler plugin that does nothing, for timing the worker's own work (bench/throughput.py).

Loaded through ``[plugins.paths]`` (``noop = "noop_handler:NoopHandler"`` with bench/ on
``PYTHONPATH``). It notes the wall-clock time of its first event, and of its
``$BENCH_EVENTS``-th, as files ``first`` and ``last`` in the directory ``$BENCH_TIMES``: the
benchmark's clock starts at the first; the last shows how long committing took after it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from consumer import Context, RecordingEvent

TIMES = "BENCH_TIMES"
EVENTS = "BENCH_EVENTS"


def note(name: str) -> None:
    """Write the time now to file `name`, atomically: the benchmark may be reading it."""
    target = Path(os.environ[TIMES]) / name
    partial = target.with_suffix(".partial")
    partial.write_text(repr(time.time()))
    partial.replace(target)


class NoopHandler:
    """Handles every event by doing nothing but count it."""

    def __init__(self) -> None:
        self._seen = 0
        self._last = int(os.environ[EVENTS])

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        self._seen += 1
        if self._seen == 1:
            note("first")
        if self._seen == self._last:
            note("last")
