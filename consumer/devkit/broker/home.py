"""Where the dev broker keeps its jars and state (``$DEVKAFKA_HOME``), the lock that guards them,
how it reports to humans, and its one error."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from consumer.devkit.broker.private import private_dir


class BrokerError(RuntimeError):
    """The local broker could not be resolved, started, reached or stopped; says why for humans."""


def devkafka_home() -> Path:
    """Cache and state root: ``$DEVKAFKA_HOME``, else ``.devkafka`` in the working directory."""
    return Path(os.environ.get("DEVKAFKA_HOME") or ".devkafka").absolute()


def say(message: str) -> None:
    # stdout is reserved for the bootstrap address, which Makefiles capture with $(shell ...).
    print(f"devkafka: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    # pytest and `make kafka-up` may race on the shared jar cache and on the run directory.
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])
