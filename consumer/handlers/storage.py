"""Where the download handler stores recordings: a local directory or an S3 bucket.

Both destinations keep ``<accountId>/<recordingId>.<fileFormat>`` next to its JSON sidecar
``<recordingId>.<fileFormat>.json`` and implement the small `Destination` protocol; the
handler owns HTTP, the destination owns bytes at rest. The media's byte count and SHA-256
are taken while it streams through `Body`, once, whichever destination it goes to.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import msgspec
import structlog

from consumer.errors import PermanentFailure
from consumer.handlers.files import Folder, remove_stale_parts

WRITE_BUFFER = 1 << 20
"""Bytes gathered before one write in a worker thread: few thread hops, bounded memory."""


@dataclass(frozen=True, slots=True)
class Names:
    """One recording's media and sidecar names below the destination's root."""

    account: str
    media: str
    """``<recordingId>.<fileFormat>``."""

    @property
    def sidecar(self) -> str:
        # `<file>.json`, not `<recording>.json`: a fileFormat of "json" must not clobber it.
        return self.media + ".json"


class Stored(enum.Enum):
    """What a destination already holds for a recording."""

    NOTHING = "nothing"
    DONE = "done"
    """A finished copy of this recording, for this status or ``complete``: skip the download."""
    OTHER = "other"
    """Something else under that name (unfinished, or another status): overwritten."""


class Body:
    """The media stream, counted, hashed and held to `max_bytes` as it is read."""

    def __init__(self, chunks: AsyncIterator[bytes], max_bytes: int) -> None:
        self._chunks = chunks
        self._max_bytes = max_bytes
        self._sha256 = hashlib.sha256()
        self.size = 0

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            self.size += len(chunk)
            if self.size > self._max_bytes:
                raise PermanentFailure(f"recording is larger than max_bytes={self._max_bytes}")
            self._sha256.update(chunk)
            yield chunk


SidecarOf = Callable[[Body], tuple[bytes, dict[str, str]]]
"""Given the fully read body: the sidecar's bytes and the media's metadata."""


class Destination(Protocol):
    """Stores, checks and removes one recording's media and sidecar."""

    async def start(self) -> None:
        """Check the destination is usable; ConfigError (exit 2) if not."""

    async def close(self) -> None: ...

    def location(self, names: Names) -> str:
        """Where the media goes, for logs."""

    def writing(self) -> AbstractAsyncContextManager[Any]:
        """Held while one recording is fetched and saved: waits while the destination has as
        many under way as it can hold in memory."""

    async def stored(self, names: Names, metadata: dict[str, str]) -> Stored:
        """What is there now for the recording `metadata` (without bytes/sha256) describes."""

    async def save(
        self,
        names: Names,
        body: Body,
        content_type: str | None,
        metadata: dict[str, str],
        sidecar_of: SidecarOf,
    ) -> None:
        """Stream `body` into the media, then the sidecar; all or nothing for the media.
        `metadata` describes the recording before the download (see `stored`)."""

    async def identity(self, names: Names) -> dict[str, str] | None:
        """The ids the stored copy was saved with (``accountid``, ``callid``, ``conferenceid``,
        those it has), or None when nothing is stored."""

    async def delete(self, names: Names) -> bool:
        """Remove media and sidecar; whether the media was there. Absence is success."""


class LocalDestination:
    """A directory: files written through `Folder` (no symlinks followed), renamed into place.

    A sidecar whose byte count matches the media file is what "done" means, so a crash between
    the two renames only costs a repeated download.
    """

    def __init__(self, root: Path) -> None:
        self._root = root

    async def start(self) -> None:
        """Remove temporary files an earlier run left behind."""
        for path in await asyncio.to_thread(remove_stale_parts, self._root):
            structlog.get_logger("consumer.download").info(
                "removed stale temporary file", path=path
            )

    async def close(self) -> None:
        return None

    def location(self, names: Names) -> str:
        return str(self._root / names.account / names.media)

    def writing(self) -> AbstractAsyncContextManager[Any]:
        # One WRITE_BUFFER per download: `engine.max_in_flight` bounds them well enough.
        return contextlib.nullcontext()

    async def stored(self, names: Names, metadata: dict[str, str]) -> Stored:
        return await asyncio.to_thread(
            _stored_locally, Folder(self._root, names.account), names, metadata.get("status")
        )

    async def save(
        self,
        names: Names,
        body: Body,
        content_type: str | None,
        metadata: dict[str, str],
        sidecar_of: SidecarOf,
    ) -> None:
        folder = Folder(self._root, names.account)
        part = folder.part_name(names.media)
        file: IO[bytes] | None = None
        pending = bytearray()
        try:
            # Inside the try: a cancellation right after the file is made still removes it.
            file = await asyncio.to_thread(folder.create, part)
            async for chunk in body:
                pending += chunk
                if len(pending) >= WRITE_BUFFER:
                    # Written from the buffer itself: it is cleared only once the write is done.
                    await asyncio.to_thread(file.write, pending)
                    pending.clear()
            await asyncio.to_thread(file.write, pending)
            await asyncio.to_thread(folder.commit, file, part, names.media)
        except BaseException:
            folder.discard(file, part)
            raise
        sidecar, _ = sidecar_of(body)
        await asyncio.to_thread(folder.write_atomically, names.sidecar, sidecar)

    async def identity(self, names: Names) -> dict[str, str] | None:
        return await asyncio.to_thread(_identity, Folder(self._root, names.account), names)

    async def delete(self, names: Names) -> bool:
        folder = Folder(self._root, names.account)
        return await asyncio.to_thread(_remove, folder, names)


def _identity(folder: Folder, names: Names) -> dict[str, str] | None:
    """The ids in the sidecar's event; empty if it is unreadable but the media is there."""
    if not folder.path.is_dir():
        return None
    try:
        ids = msgspec.json.decode(folder.read(names.sidecar), type=_Identified).event
    except OSError:
        try:
            folder.size(names.media)
        except OSError:
            return None
        return {}
    except msgspec.DecodeError:
        return {}
    found = {"accountid": ids.account_id, "callid": ids.call_id, "conferenceid": ids.conference_id}
    return {key: value for key, value in found.items() if value is not None}


def _remove(folder: Folder, names: Names) -> bool:
    if not folder.path.is_dir():
        return False
    found = folder.remove(names.media)
    folder.remove(names.sidecar)
    return found


class _Done(msgspec.Struct):
    bytes: int


class _SidecarEvent(msgspec.Struct):
    status: str | None = None


class _Sidecar(msgspec.Struct):
    event: _SidecarEvent
    download: _Done


class _Ids(msgspec.Struct, rename="camel"):
    account_id: str | None = None
    call_id: str | None = None
    conference_id: str | None = None


class _Identified(msgspec.Struct):
    event: _Ids


def _stored_locally(folder: Folder, names: Names, status: str | None) -> Stored:
    """DONE: a sidecar matching the media file's size, for this status or ``complete``.

    A ``partial`` recording is fetched again when its ``complete`` event arrives.
    """
    try:
        size = folder.size(names.media)
    except OSError:
        return Stored.NOTHING
    try:
        done = msgspec.json.decode(folder.read(names.sidecar), type=_Sidecar)
    except (OSError, msgspec.DecodeError):
        return Stored.OTHER
    if size == done.download.bytes and done.event.status in (status, "complete"):
        return Stored.DONE
    return Stored.OTHER
