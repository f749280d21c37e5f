"""Where the worker's time goes: cProfile over a quiet run (no-op handler, no per-event line).

Run from the repository root:  .venv/bin/python bench/profile_worker.py [count] [top] [level]
(default 100,000 events of ~1 KB on 6 partitions, the top 20 functions by own time, level
warning; ``info`` profiles the canonical line per event too, written to /dev/null). Uses
``$KAFKA_BOOTSTRAP_SERVERS`` or starts the local broker.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import sys

from _common import (
    Probe,
    bootstrap,
    fresh,
    messages,
    publish_backlog,
    stdout_to_devnull,
    time_worker,
)
from _common import worker_settings as settings_for

from consumer.observability.logs import configure_logging
from consumer.settings.config import LoggingSettings

PARTITIONS = 6


async def main(server: str, count: int, top: int, level: str) -> None:
    topic = fresh("profile")
    await publish_backlog(server, topic, PARTITIONS, messages(count))
    configure_logging(LoggingSettings(format="json", level=level))  # type: ignore[arg-type]
    profile = cProfile.Profile()
    with stdout_to_devnull():
        profile.enable()
        timing = await time_worker(settings_for(server, topic, level), Probe(count))
        profile.disable()
    print(f"{count:,} events in {timing.seconds:.2f} s under the profiler ({timing.rate:,.0f}/s)")
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(top)
    print(text.getvalue())


if __name__ == "__main__":
    asyncio.run(
        main(
            bootstrap(),
            int(sys.argv[1]) if len(sys.argv) > 1 else 100_000,
            int(sys.argv[2]) if len(sys.argv) > 2 else 20,
            sys.argv[3] if len(sys.argv) > 3 else "warning",
        )
    )
