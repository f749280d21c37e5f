"""The ``audit`` handler: an append-only JSON-lines audit trail of recording events.

Each Kafka record becomes one line, written once: delivery is at least once, so a record seen
again (a retry after a crash, a rebalance) is recognised by its topic, partition and offset and
skipped, also across restarts, because `start` reads the end of the file back. One worker
process should own a file; give each worker its own ``path`` when several run.

    [routes]
    default = ["audit", "log"]

    [handlers.audit]
    path = "/var/log/recordings/audit.jsonl"
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
from typing_extensions import override

from consumer import BaseHandler, OptionError, PermanentFailure, RetryLater

if TYPE_CHECKING:
    from consumer import Context, RecordingEvent

__all__ = ["AuditLine", "AuditLogHandler", "AuditOptions", "read_audit_log"]

RecordId = tuple[str, int, int]
"""(topic, partition, offset): what identifies a Kafka record, and so a redelivery."""


class AuditOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[handlers.audit]`` in the worker's settings."""

    path: str = "audit/recordings.jsonl"
    """The JSON-lines file; it and its directory are created when missing."""
    fsync: bool = True
    """Flush every line to disk before the event counts as handled."""
    remember: int = 100_000
    """Records remembered to skip redeliveries; `start` reads back this many of the last lines."""
    full_disk_delay: float = 30.0
    """Seconds to wait before trying again when the disk is full."""


class AuditLine(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One line of the audit file."""

    audited_at: datetime
    topic: str
    partition: int
    offset: int
    attempt: int
    """The handler's attempt that wrote the line (1 unless earlier attempts failed)."""
    event: Any
    """The message value as it arrived, unknown fields included."""


class _Where(msgspec.Struct, rename="camel"):
    topic: str
    partition: int
    offset: int


class AuditLogHandler(BaseHandler):
    """Appends one line per record to ``path``; skips records it has already written."""

    Options: ClassVar[type[AuditOptions]] = AuditOptions

    def __init__(self, options: AuditOptions | None = None) -> None:
        self._options = options = options or AuditOptions()
        if options.remember < 1:
            raise OptionError("remember", "must be at least 1")
        self._path = Path(options.path)
        self._fd: int | None = None
        self._seen: dict[RecordId, None] = {}
        """Insertion-ordered, so the oldest is forgotten first."""
        self._lock = asyncio.Lock()
        self._writes: set[asyncio.Future[None]] = set()
        self._encode = msgspec.json.Encoder().encode

    @override
    async def start(self) -> None:
        """Open the file and read back its last lines; a problem stops the worker at start-up."""
        try:
            recent = await asyncio.to_thread(_read_back, self._path, self._options.remember)
            self._fd = await asyncio.to_thread(_open_for_append, self._path)
        except OSError as exc:
            raise OptionError("path", f"cannot open {self._path}: {exc.strerror}") from None
        self._seen = dict.fromkeys(recent)

    @override
    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        if self._fd is None:
            raise RuntimeError("the audit handler was used before start()")
        where = (ctx.record.topic, ctx.record.partition, ctx.record.offset)
        try:
            original = msgspec.json.decode(ctx.value)
        except msgspec.DecodeError:
            raise PermanentFailure("the message value is not JSON") from None
        line = AuditLine(
            audited_at=datetime.now(UTC),
            topic=where[0],
            partition=where[1],
            offset=where[2],
            attempt=ctx.attempt,
            event=original,
        )
        # One writer at a time: the check and the append must not interleave.
        async with self._lock:
            if self._writes:  # left running by a cancelled attempt: let it land and count
                await asyncio.wait(self._writes)
            if where in self._seen:
                ctx.log.info("already audited", path=str(self._path))
                return
            data = self._encode(line) + b"\n"
            write = asyncio.ensure_future(
                asyncio.to_thread(_append, self._fd, data, self._options.fsync)
            )
            # Cancelling this attempt (a timeout, a forced shutdown) cannot stop the thread, so
            # the write is shielded and remembered when it ends: a retry then adds no line.
            write.add_done_callback(functools.partial(self._written, where))
            self._writes.add(write)
            try:
                await asyncio.shield(write)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    delay = self._options.full_disk_delay
                    raise RetryLater("the audit log's disk is full", delay=delay) from exc
                raise  # anything else is retried with the worker's backoff policy
        ctx.log.info("event audited", path=str(self._path))

    @override
    async def close(self) -> None:
        """Close the file, after any write a cancelled attempt left running; called once."""
        await asyncio.gather(*self._writes, return_exceptions=True)
        fd, self._fd = self._fd, None
        if fd is not None:
            await asyncio.to_thread(os.close, fd)

    def _written(self, where: RecordId, write: asyncio.Future[None]) -> None:
        self._writes.discard(write)
        if not write.cancelled() and write.exception() is None:
            self._remember(where)

    def _remember(self, where: RecordId) -> None:
        self._seen[where] = None
        if len(self._seen) > self._options.remember:
            del self._seen[next(iter(self._seen))]


def read_audit_log(path: Path) -> list[AuditLine]:
    """Every complete line of an audit file, in order; a torn last line is left out."""
    decode = msgspec.json.Decoder(AuditLine).decode
    lines: list[AuditLine] = []
    with path.open("rb") as file:
        for raw in file:
            with contextlib.suppress(msgspec.DecodeError):
                lines.append(decode(raw))
    return lines


def _read_back(path: Path, remember: int) -> list[RecordId]:
    """The records of the last `remember` lines (only a regular file is read)."""
    if not path.is_file():
        return []
    decode = msgspec.json.Decoder(_Where).decode
    last: deque[RecordId] = deque(maxlen=remember)
    with path.open("rb") as file:
        for raw in file:
            with contextlib.suppress(msgspec.DecodeError):
                where = decode(raw)
                last.append((where.topic, where.partition, where.offset))
    return list(last)


def _open_for_append(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _append(fd: int, data: bytes, sync: bool) -> None:
    """Write `data` whole or not at all: a failed write is cut off again, so no torn line."""
    size = os.fstat(fd).st_size
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        if sync:
            os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise
