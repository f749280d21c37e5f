"""Whether a broker process is ours, alive, gone, and serving clients."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from consumer.kafka.clients import registered_brokers
from consumer.settings.config import KafkaSettings


async def answers_metadata(bootstrap: str, deadline: float, alive: Callable[[], bool]) -> bool:
    # An open port is not enough: the broker must be registered and serving metadata.
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)  # each refused attempt would log an ERROR
    try:
        while alive():
            remaining = deadline - time.monotonic()
            timeout = max(0.5, min(5.0, remaining))
            if await registered_brokers(KafkaSettings(bootstrap_servers=bootstrap), timeout):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.2)
        return False
    finally:
        aiokafka_log.setLevel(level)


def exited(pid: int) -> bool:
    """Whether `pid` has finished exiting: gone, or a zombie (its sockets and memory are freed).

    A dying JVM's command line reads empty before its listeners close, so `is_our_broker`
    turning False is no proof the broker is gone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def is_our_broker(pid: int, config_file: Path) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # A pid from a stale file may since belong to another process; never signal that one.
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self").exists():
        return True
    try:
        return str(config_file).encode() in cmdline.read_bytes()
    except OSError:
        return False
