"""Files in one folder below a root directory, written without following a link out of it.

The root is the operator's (it may itself be a symlink); the folder's name comes from an event.
Anyone who can write to the root could plant ``<root>/<folder>`` as a symlink to elsewhere, so
the folder is opened relative to the root with ``O_NOFOLLOW`` and every file in it is created,
renamed and read relative to that descriptor (``openat`` semantics), never by path.

Each operation opens the folder itself and closes it before returning: no descriptor outlives
a call, so a cancelled caller can never leave a worker thread writing through a closed (or
reused) descriptor number.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from consumer.errors import PermanentFailure

PART_SUFFIX = ".part"
STALE_PART_AGE = 3600.0
"""Seconds since its last write after which a ``.part`` file is someone's leftover: a live
download writes at least every megabyte, and other workers may share the root."""

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Folder:
    """``<root>/<name>``; `name` must be a single path component."""

    root: Path
    name: str

    @property
    def path(self) -> Path:
        return self.root / self.name

    @contextlib.contextmanager
    def _opened(self) -> Iterator[int]:
        """The folder's descriptor, created if missing; PermanentFailure if it is a link."""
        self.root.mkdir(parents=True, exist_ok=True)
        root = os.open(self.root, _DIRECTORY)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.name, dir_fd=root)
            try:
                folder = os.open(self.name, _DIRECTORY | os.O_NOFOLLOW, dir_fd=root)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                raise PermanentFailure(
                    f"{self.path} is a symlink or not a directory: refusing to write through it"
                ) from None
        finally:
            os.close(root)
        try:
            yield folder
        finally:
            os.close(folder)

    def part_name(self, target: str) -> str:
        """A fresh name for the temporary file that becomes `target`."""
        return f".{target}.{secrets.token_hex(6)}{PART_SUFFIX}"

    def create(self, name: str) -> IO[bytes]:
        """A new file `name`, owner-only; fails if anything (a link included) has that name."""
        with self._opened() as folder:
            return os.fdopen(os.open(name, _NEW_FILE, 0o600, dir_fd=folder), "wb")

    def commit(self, file: IO[bytes], name: str, target: str) -> None:
        """fsync and close `file` (named `name`), rename it to `target`, fsync the folder."""
        file.flush()
        os.fsync(file.fileno())
        file.close()
        with self._opened() as folder:
            os.replace(name, target, src_dir_fd=folder, dst_dir_fd=folder)
            os.fsync(folder)

    def discard(self, file: IO[bytes] | None, name: str) -> None:
        """Close and remove a temporary file; synchronous, so it also runs while cancelling."""
        if file is not None:
            file.close()
        with self._opened() as folder, contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=folder)

    def write_atomically(self, target: str, data: bytes) -> None:
        name, file = self.part_name(target), None
        try:
            file = self.create(name)
            file.write(data)
            self.commit(file, name, target)
        except BaseException:
            self.discard(file, name)
            raise

    def read(self, name: str) -> bytes:
        """The contents of `name`; OSError if missing or a link."""
        with self._opened() as folder:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            with os.fdopen(fd, "rb") as file:
                return file.read()

    def remove(self, name: str) -> bool:
        """Unlink `name` itself (a link is removed, not followed); whether it was there."""
        with self._opened() as folder:
            try:
                os.unlink(name, dir_fd=folder)
            except FileNotFoundError:
                return False
        return True

    def size(self, name: str) -> int:
        """The size of `name` itself (a link is not followed); OSError if missing."""
        with self._opened() as folder:
            return os.stat(name, dir_fd=folder, follow_symlinks=False).st_size


def remove_stale_parts(root: Path, older_than: float = STALE_PART_AGE) -> list[str]:
    """Delete ``<root>/*/.*.part`` files untouched for `older_than` seconds; their paths.

    A download cancelled at the wrong moment (its worker thread still creating the file while
    the task is cancelled) can leave one behind. Links are neither followed nor removed.
    """
    removed: list[str] = []
    cutoff = time.time() - older_than
    try:
        folders = [e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return removed
    for name in folders:
        with contextlib.suppress(PermanentFailure), Folder(root, name)._opened() as folder:
            for entry in os.scandir(folder):
                if not (entry.name.startswith(".") and entry.name.endswith(PART_SUFFIX)):
                    continue
                if (
                    entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff
                ):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.name, dir_fd=folder)
                    removed.append(str(root / name / entry.name))
    return removed
