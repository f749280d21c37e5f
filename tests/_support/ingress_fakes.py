"""Stand-ins for the ingress store's unit tests: a Kafka link that acks on demand, and a disk that
refuses the spool's writes as a read-only or full volume would."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from consumer.ingress.spool import SpooledCallback
from consumer.ingress.spool_files import forget, write_durably


class Link:
    """Acknowledges nothing while `acking` is false; records what it was asked to deliver."""

    def __init__(self) -> None:
        self.up = True
        self.acking = False
        self.delivered: list[bytes] = []
        self.started = asyncio.Event()

    async def deliver(self, entry: SpooledCallback) -> bool:
        if not self.acking:
            self.up = False
            return False
        self.delivered.append(entry.value)
        self.up = True
        return True

    async def deliver_in_order(self, entries: Sequence[SpooledCallback]) -> int:
        for acked, entry in enumerate(entries):
            if not await self.deliver(entry):
                return acked
        return len(entries)


class Disk:
    """While `broken`, the spool's segment writes and marker writes fail with EROFS (through the
    spool's own code paths); `markers` counts the marker writes tried."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.broken = False
        self.markers = 0

        def failing_forget(directory: Path, *args: Any) -> None:
            self.markers += 1
            self._refuse(directory)
            forget(directory, *args)

        def failing_write(path: Path, *args: Any) -> int:
            self._refuse(path)
            return write_durably(path, *args)

        monkeypatch.setattr("consumer.ingress.spool.forget", failing_forget)
        monkeypatch.setattr("consumer.ingress.spool.write_durably", failing_write)

    def _refuse(self, path: Path) -> None:
        if self.broken:
            raise OSError(errno.EROFS, "Read-only file system", str(path))


def entry(value: bytes) -> SpooledCallback:
    return SpooledCallback(value=value, key=b"r-1", headers=())
