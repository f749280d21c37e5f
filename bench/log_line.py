"""What one per-event JSON line costs, for structlog processor chains that write the same line.

Run from the repository root:  .venv/bin/python bench/log_line.py [lines] [rounds]
(default 50,000 lines, 5 rounds). Every variant writes the worker's canonical outcome line
(``message`` with topic, partition, offset, the event's summary, outcome, duration_ms, handlers,
attempts) to /dev/null from inside an event loop, 500 lines per loop turn as a fetched batch
would; variants take turns, and each shows the microseconds per line of its quietest batch.

``before`` is round 1's chain, copied here so it stays measurable: merge_contextvars,
add_log_level, Repeats, TimeStamper(iso, utc), ExceptionRenderer, JSONRenderer(msgspec) and
BytesLogger (a flush per line). Each ``before + X`` swaps in one piece of
consumer/observability/logs.py;
``before without Repeats`` shows what Repeats costs an info line (it stays: warnings and errors
need it); ``project`` is what ``configure_logging`` sets up now, every kept piece together.
orjson is measured when it is installed (``pip install orjson``); the project keeps msgspec.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from _common import stdout_to_devnull

from consumer.observability.logs import (
    JsonLine,
    Repeats,
    TurnFlushedLoggerFactory,
    UtcTimestamp,
    configure_logging,
    merge_contextvars,
)
from consumer.settings.config import LoggingSettings

BATCH = 500
_msgspec_encode = msgspec.json.Encoder(enc_hook=repr).encode

Chain = tuple[list[Any], Any]
"""(processors, logger factory) for `structlog.configure`."""


def _msgspec_dumps(obj: Any, **_: Any) -> bytes:
    return _msgspec_encode(obj)


def _orjson_dumps() -> Callable[..., bytes] | None:
    try:
        import orjson  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    dumps: Callable[..., bytes] = orjson.dumps

    def encode(obj: Any, **_: Any) -> bytes:
        return dumps(obj, default=repr)

    return encode


def _exceptions() -> Any:
    return structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )


def before(dumps: Callable[..., bytes] = _msgspec_dumps) -> Chain:
    """Round 1's chain, as it was in consumer/observability/logs.py."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        Repeats(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _exceptions(),
        structlog.processors.JSONRenderer(dumps),
    ], structlog.BytesLoggerFactory()


def swap(chain: Chain, old: Any, new: Any) -> Chain:
    """`chain` with the processor of `old`'s type (or `old` itself) replaced by `new`."""
    processors, factory = chain
    out = [
        new if (p is old or (isinstance(old, type) and isinstance(p, old))) else p
        for p in processors
    ]
    assert out != processors, f"{old} not in the chain"
    return out, factory


def variants() -> dict[str, Callable[[], Chain]]:
    """Each step alone on top of `before`, then the project's chain with the steps it kept."""
    found: dict[str, Callable[[], Chain]] = {
        "before": before,
        "before + merge_contextvars only if any bound": lambda: swap(
            before(), structlog.contextvars.merge_contextvars, merge_contextvars
        ),
        "before without Repeats": lambda: (
            [p for p in before()[0] if not isinstance(p, Repeats)],
            structlog.BytesLoggerFactory(),
        ),
        "before + UtcTimestamp": lambda: swap(
            before(), structlog.processors.TimeStamper, UtcTimestamp()
        ),
        "before + JsonLine": lambda: (
            [*before()[0][:-2], JsonLine(_exceptions())],
            structlog.BytesLoggerFactory(),
        ),
        "before + TurnFlushedLogger": lambda: (before()[0], TurnFlushedLoggerFactory()),
    }
    orjson = _orjson_dumps()
    if orjson is not None:
        found["before + orjson"] = lambda: before(orjson)
    found["project (configure_logging)"] = _project
    return found


_PROJECT = object()


def _project() -> Chain:
    return [_PROJECT], None


def configure(chain: Chain) -> None:
    processors, factory = chain
    if processors == [_PROJECT]:
        configure_logging(LoggingSettings(format="json", level="info"))
        return
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


FIELDS = {
    "topic": "bandwidth.recordings",
    "partition": 3,
    "eventType": "recordingAvailable",
    "status": "complete",
    "recordingId": "r-00001234-00000000-0000-0000-0000-0000000004d2",
    "callId": "c-00001234-00000000-0000-0000-0000-0000000004d2",
    "accountId": "9900000",
}


async def time_lines(lines: int) -> float:
    """Seconds per line, the least of every batch's: on a shared machine the quietest batch
    is the closest to what the line costs. A batch ends with its loop turn (and its flush)."""
    log = structlog.get_logger("consumer.delivery").bind()
    best = float("inf")
    for start in range(0, lines, BATCH):
        offsets = range(start, min(start + BATCH, lines))
        started = time.perf_counter()
        for offset in offsets:
            log.info(
                "message",
                **FIELDS,
                offset=offset,
                outcome="handled",
                duration_ms=0.123,
                handlers=("noop",),
                attempts=1,
            )
        await asyncio.sleep(0)  # the end of a loop turn, where coalesced writes are flushed
        best = min(best, (time.perf_counter() - started) / len(offsets))
    sys.stdout.buffer.flush()
    return best


def sample_line(chain: Chain) -> dict[str, Any]:
    """One line as the chain writes it, parsed back: the variants must agree on its fields."""
    saved = sys.stdout
    out = io.BytesIO()
    sys.stdout = io.TextIOWrapper(out)
    try:
        configure(chain)
        asyncio.run(time_lines(1))
        sys.stdout.flush()
        line: dict[str, Any] = json.loads(out.getvalue())
    finally:
        sys.stdout = saved
    return line


def main(lines: int, rounds: int) -> None:
    chains = variants()
    reference = sample_line(before())
    results: dict[str, float] = {}
    for name, make in chains.items():
        line = sample_line(make())
        assert line.keys() == reference.keys(), f"{name}: {sorted(line)} != {sorted(reference)}"
        assert line["level"] == "info", (name, line)
        assert line["timestamp"].endswith("Z"), (name, line)
    with stdout_to_devnull():
        for _ in range(rounds):  # interleaved, so a noisy moment hurts every variant alike
            for name, make in chains.items():
                configure(make())
                per_line = asyncio.run(time_lines(lines))
                results[name] = min(results.get(name, per_line), per_line)
    base = results["before"]
    print(f"{lines:,} lines per round in batches of {BATCH}, {rounds} rounds; the quietest batch")
    print(f"one line: {json.dumps(reference)}")
    print(f"{'chain':45} {'us/line':>8} {'vs before':>10}")
    for name, per_line in results.items():
        print(f"{name:45} {per_line * 1e6:8.2f} {per_line / base:9.2f}x")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 50_000,
        int(sys.argv[2]) if len(sys.argv) > 2 else 5,
    )
