"""The ingress's durable spool: callbacks Kafka could not acknowledge in time, kept on disk in
arrival order until they are forwarded.

The directory (0700) holds segment files (``<number>.spool``, 0600, records back to back as
`consumer.ingress.spool_files` writes them), a marker ``forwarded`` (segment number and offset of
the oldest entry not yet acknowledged) and a ``lock`` file that keeps a second process out. An
entry is durable before `Spool.append` returns; after a crash at any point an entry is at most
forwarded again (an exact copy), never lost and never forwarded half.

Writes and fsyncs run in `asyncio.to_thread`, and appends that arrive while a write is under way
are written and fsync'd together. bench/spool.py measured the thread against fsync'ing inline:
about 0.1 ms more per lone append (p50 0.41 against 0.31 ms), but inline held the whole event
loop (health checks, the Kafka client) up for each fsync, 25 ms at worst against 7 ms.
"""

from __future__ import annotations

import asyncio
import bisect
import fcntl
import os
import re
from asyncio import to_thread
from collections import deque
from pathlib import Path
from typing import Self

from consumer.ingress.spool_files import (
    SpooledCallback,
    TornRecord,
    decode,
    encode,
    forget,
    fsync_directory,
    read_marker,
    scan,
    write_durably,
)

__all__ = ["Spool", "SpoolError", "SpoolFull", "SpoolUnwritable", "SpooledCallback", "TornRecord"]

SEGMENT_BYTES = 16 * 2**20
"""A segment file takes no more appends past this size; whole files are deleted once forwarded."""

_SEGMENT_NAME = re.compile(r"(\d{20})\.spool")


class SpoolError(Exception):
    """The spool cannot take or give back a callback: the ingress must not answer 2xx for it."""


class SpoolFull(SpoolError):
    """Appending would take the spool past its size cap: the caller answers 503 and Bandwidth
    retries later, instead of the disk filling up."""


class SpoolUnwritable(SpoolError):
    """The OS refused to store or forget an entry (read-only directory, no space, I/O error, the
    spool locked by another process): the caller answers 503; the OSError is its cause."""


class _Segment:
    """One segment file: its descriptor, the end of its last whole record, its records' offsets
    and the index of the first one not yet forwarded."""

    def __init__(self, number: int, fd: int, offsets: list[int], end: int) -> None:
        self.number, self.fd, self.offsets, self.end = number, fd, offsets, end
        self.head = 0
        self.sealed = False  # after a failed write, appends go to a new segment

    def bytes_between(self, first: int, last: int) -> int:
        """The size of records `first` up to (not including) `last`."""
        stop = self.offsets[last] if last < len(self.offsets) else self.end
        return stop - self.offsets[first] if first < last else 0


class Spool:
    """Callbacks on disk in arrival order; see the module docstring for the layout."""

    def __init__(self, directory: Path, max_bytes: int, lock: int) -> None:
        self.directory, self.max_bytes, self._lock_fd = directory, max_bytes, lock
        self.torn: tuple[TornRecord, ...] = ()
        self._segments: deque[_Segment] = deque()
        self._next_number = 1
        self._count = self._bytes = self._queued_bytes = 0
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one writer at a time: a batch of appends, or a remove
        self.unmarked = False
        """Entries were removed that the marker on disk does not say are forwarded yet."""

    @classmethod
    def open(cls, directory: Path, max_bytes: int) -> Self:
        """Create the directory (0700) if needed and read what a previous process left. A segment
        is cut (truncated) at its first record that is cut short or fails its checksum, reported
        in `torn`; the records before it stay, and so do the other segments. Raises
        SpoolUnwritable when the directory cannot be created, read or locked."""
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            spool = cls(directory, max_bytes, lock)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                spool._load()
            except BaseException:
                spool.close()
                raise
        except OSError as error:
            raise SpoolUnwritable(f"spool directory {directory}: {error}") from error
        return spool

    def _load(self) -> None:
        mark_number, mark_offset = read_marker(self.directory)
        numbers = sorted(
            int(match[1])
            for name in os.listdir(self.directory)
            if (match := _SEGMENT_NAME.fullmatch(name))
        )
        self._next_number = max([1, mark_number, *(n + 1 for n in numbers)])
        torn = []
        for number in numbers:
            path = self._path(number)
            if number < mark_number:  # forwarded, but a crash came before its deletion
                path.unlink()
                continue
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            self._segments.append(segment := _Segment(number, fd, [], 0))
            data = os.read(fd, os.fstat(fd).st_size)
            segment.offsets, segment.end = scan(data)
            if segment.end < len(data):
                torn.append(TornRecord(path.name, segment.end, len(data) - segment.end))
                os.ftruncate(fd, segment.end)
                os.fsync(fd)
            if number == mark_number:
                segment.head = bisect.bisect_left(segment.offsets, mark_offset)
            self._count += len(segment.offsets) - segment.head
            self._bytes += segment.bytes_between(segment.head, len(segment.offsets))
        self.torn = tuple(torn)
        doomed = []
        for segment in self._segments:
            if segment.head < len(segment.offsets):
                break
            doomed.append(segment)
            self._path(segment.number).unlink()
        fsync_directory(self.directory)
        self._drop(doomed)

    def __len__(self) -> int:
        """Entries stored and not yet removed."""
        return self._count

    @property
    def size_bytes(self) -> int:
        """Bytes of the entries not yet removed, counted against `max_bytes`. The disk holds up to
        one segment more, the forwarded part of the oldest segment file; while `unmarked`, also
        the files forwarded since the marker was last written."""
        return self._bytes

    async def append(self, entry: SpooledCallback) -> None:
        """Store `entry` after all before it: written and fsync'd (the directory too when a new
        segment file was created) before this returns. Callers may append concurrently.

        Raises SpoolFull if it would take the spool past `max_bytes`, SpoolUnwritable if the OS
        refused the write (then no part of it is ever forwarded)."""
        record = encode(entry)
        if self._bytes + self._queued_bytes + len(record) > self.max_bytes:
            held = self._bytes + self._queued_bytes
            raise SpoolFull(f"spool {self.directory} holds {held} bytes of {self.max_bytes}")
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((record, stored))
        self._queued_bytes += len(record)
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        await stored

    async def _flush(self) -> None:
        # A task of its own, so that a cancelled caller cannot stop a batch half way.
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                async with self._lock:
                    await self._write(batch)
        finally:
            self._flushing = None

    async def _write(self, batch: list[tuple[bytes, asyncio.Future[None]]]) -> None:
        """Write `batch` in runs, one per segment it goes to, each fsync'd before its callers
        are told; after a failure the rest of the batch fails too and a new segment is begun."""
        done = 0
        try:
            while done < len(batch):
                tail = self._tail_for(len(batch[done][0]))
                start = end = 0 if tail is None else tail.end
                run: list[bytes] = []
                for record, _ in batch[done:]:
                    if run and end + len(record) > SEGMENT_BYTES:
                        break
                    run.append(record)
                    end += len(record)
                number = self._next_number if tail is None else tail.number
                fd = None if tail is None else tail.fd
                if tail is None:
                    self._next_number += 1  # even if creating fails: never reuse a name
                data = b"".join(run)
                fd = await to_thread(write_durably, self._path(number), fd, start, data)
                if tail is None:
                    self._segments.append(tail := _Segment(number, fd, [], 0))
                for record in run:
                    tail.offsets.append(tail.end)
                    tail.end += len(record)
                self._count += len(run)
                self._bytes += len(data)
                self._queued_bytes -= len(data)
                for _, stored in batch[done : done + len(run)]:
                    if not stored.done():  # its caller may have been cancelled
                        stored.set_result(None)
                done += len(run)
        except BaseException as error:
            self._queued_bytes -= sum(len(record) for record, _ in batch[done:])
            if self._segments:
                self._segments[-1].sealed = True
            failure = SpoolUnwritable(f"spool {self.directory}: {error}")
            failure.__cause__ = error
            for _, stored in batch[done:]:
                if not stored.done():
                    stored.set_exception(failure)
            if not isinstance(error, OSError):
                raise

    def _tail_for(self, size: int) -> _Segment | None:
        """The segment a record of `size` bytes is appended to; None for a new one."""
        tail = self._segments[-1] if self._segments else None
        if tail is None or tail.sealed or (tail.end and tail.end + size > SEGMENT_BYTES):
            return None
        return tail

    def oldest(self, limit: int) -> list[SpooledCallback]:
        """Up to `limit` entries in arrival order, not removed, read back from the segment files.
        Raises SpoolError if one changed on disk since it was written or checked."""
        entries: list[SpooledCallback] = []
        for segment in self._segments:
            last = min(segment.head + limit - len(entries), len(segment.offsets))
            if last <= segment.head:
                continue
            start = segment.offsets[segment.head]
            data = os.pread(segment.fd, segment.bytes_between(segment.head, last), start)
            for offset in segment.offsets[segment.head : last]:
                found = decode(data, offset - start)
                if found is None:
                    name = self._path(segment.number).name
                    raise SpoolError(f"spool record {name}:{offset} changed on disk")
                entries.append(found[0])
            if len(entries) == limit:
                break
        return entries

    async def remove(self, count: int, *, mark: bool = True) -> None:
        """The `count` oldest entries were acknowledged by Kafka: at once no longer counted nor
        handed out by `oldest`, their bytes freed; then, with `mark`, forgotten durably (`mark`).

        Raises SpoolUnwritable if the OS refused the marker: they stay removed in this process
        (never sent twice by it) and `unmarked` is True until a later `mark` succeeds; a restart
        before that forwards them again, duplicates and no loss."""
        async with self._lock:
            if not 0 <= count <= self._count:
                raise ValueError(f"cannot remove {count} of {self._count} entries")
            left = count
            for segment in self._segments:
                step = min(left, len(segment.offsets) - segment.head)
                self._bytes -= segment.bytes_between(segment.head, segment.head + step)
                segment.head += step
                left -= step
            self._count -= count
            self.unmarked = self.unmarked or count > 0
            if mark:
                await self._mark()

    async def mark(self) -> None:
        """Write the marker as far as forwarding got (fsync'd, renamed), then delete the segment
        files wholly forwarded: after a remove that could not, and to learn whether the spool
        takes writes again. Raises SpoolUnwritable if the OS refused."""
        async with self._lock:
            await self._mark()

    async def _mark(self) -> None:
        kept = next((s for s in self._segments if s.head < len(s.offsets)), None)
        if kept is None:  # all forwarded: every file goes, the next segment starts afresh
            mark, doomed = (self._next_number, 0), list(self._segments)
        else:
            mark = (kept.number, kept.offsets[kept.head])
            doomed = [s for s in self._segments if s.number < kept.number]
        paths = [self._path(s.number) for s in doomed]
        for segment in doomed:
            # No append may go to a file the marker may already say is forwarded (forget can
            # fail after its rename): it would be deleted, 200 answered, at the next start.
            segment.sealed = True
        try:
            await to_thread(forget, self.directory, mark, paths)
        except OSError as error:
            raise SpoolUnwritable(f"spool {self.directory}: {error}") from error
        self.unmarked = False
        self._drop(doomed)

    def _drop(self, segments: list[_Segment]) -> None:
        for segment in segments:
            os.close(segment.fd)
            self._segments.remove(segment)

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:020d}.spool"

    def close(self) -> None:
        """Release the files (after the last append and remove returned); the spool stays on disk
        for the next `open`."""
        self._drop(list(self._segments))
        os.close(self._lock_fd)
