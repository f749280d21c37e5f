"""The spool's files: the record format, the marker of how far forwarding got, durable writes.

A record is `HEADER` (payload length, CRC32 over the length's four bytes and the payload) and
the payload. The checksum covers the length too, so a flipped length byte cannot make a record
seem whole; a record cut short or failing its checksum is never decoded.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import msgspec

HEADER = struct.Struct("<II")
_MARK = struct.Struct("<QQ")
MARKER = "forwarded"


class SpooledCallback(msgspec.Struct, frozen=True, array_like=True):
    """A callback as it will be produced: the body exactly as received, its key and headers.
    (Encoded as an array: the field names are not repeated in every record.)"""

    value: bytes
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]


class TornRecord(msgspec.Struct, frozen=True):
    """Where `Spool.open` cut a segment file: its first record that was cut short by a crash or
    fails its checksum, and the bytes dropped from there to the end of the file."""

    file: str
    offset: int
    dropped_bytes: int


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SpooledCallback)


def encode(entry: SpooledCallback) -> bytes:
    """`entry` as one record."""
    payload = _encoder.encode(entry)
    length = len(payload).to_bytes(4, "little")
    return length + zlib.crc32(payload, zlib.crc32(length)).to_bytes(4, "little") + payload


def decode(buffer: bytes | memoryview, offset: int) -> tuple[SpooledCallback, int] | None:
    """The record at `offset` and where the next one begins; None if it is cut short, fails its
    checksum or is not a callback."""
    view = memoryview(buffer)
    start = offset + HEADER.size
    if start > len(view):
        return None
    length, crc = HEADER.unpack_from(view, offset)
    payload = view[start : start + length]
    if len(payload) < length or zlib.crc32(payload, zlib.crc32(view[offset : offset + 4])) != crc:
        return None
    try:
        return _decoder.decode(payload), start + length
    except msgspec.DecodeError:  # intact bytes, but not a callback in this format
        return None


def scan(data: bytes) -> tuple[list[int], int]:
    """The offsets of the whole, intact records at the start of `data`, and where they end:
    reading stops at the first bad record, since nothing after it can be trusted to be framed."""
    offsets: list[int] = []
    end = 0
    while end < len(data) and (found := decode(data, end)) is not None:
        offsets.append(end)
        end = found[1]
    return offsets, end


def read_marker(directory: Path) -> tuple[int, int]:
    """Segment number and offset of the oldest entry not yet forwarded; (0, 0) when there is no
    marker, or an unreadable one: everything is forwarded again then, which loses nothing."""
    try:
        data = (directory / MARKER).read_bytes()
    except FileNotFoundError:
        return 0, 0
    if len(data) != _MARK.size + 4 or zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "little"):
        return 0, 0
    number, offset = _MARK.unpack(data[:-4])
    return number, offset


def forget(directory: Path, mark: tuple[int, int], doomed: list[Path]) -> None:
    """Replace the marker with `mark` durably (written, fsync'd, renamed over the old one), then
    delete the forwarded segment files `doomed`."""
    data = _MARK.pack(*mark)
    data += zlib.crc32(data).to_bytes(4, "little")
    temporary = directory / f"{MARKER}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, directory / MARKER)
    for path in doomed:
        path.unlink(missing_ok=True)  # gone already if a failure cut the last call short
    fsync_directory(directory)


def write_durably(path: Path, fd: int | None, offset: int, data: bytes) -> int:
    """Write `data` at `offset` of segment file `path` (created 0600 if `fd` is None) and fsync
    it, and the directory for a new file; returns the descriptor. On failure the file is cut back
    to `offset` (a new one deleted), so no half record stays behind if that can be helped."""
    created = fd is None
    if fd is None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        written = 0
        while written < len(data):
            written += os.pwrite(fd, data[written:], offset + written)
        os.fdatasync(fd)
        if created:
            fsync_directory(path.parent)
    except OSError:
        try:
            os.ftruncate(fd, offset)
            if created:
                os.close(fd)
                path.unlink()
        except OSError:
            pass  # what is left is cut at its first bad record by the next Spool.open
        raise
    return fd


def fsync_directory(directory: Path) -> None:
    """Make the creation, renaming and deletion of files in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
