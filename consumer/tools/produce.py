"""Publishing events to the topic, for demos, load tests and replaying captured callbacks."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from consumer.kafka import connection
from consumer.kafka.clients import build_producer
from consumer.kafka.topics import admin_client, create_topic
from consumer.settings.config import KafkaSettings

PROGRESS_FROM = 10_000
"""Below this many messages a progress bar is noise."""


async def ensure_topic(settings: KafkaSettings, topic: str, partitions: int) -> None:
    """Create `topic` if it does not exist yet; an existing topic is left as it is."""
    async with admin_client(settings) as admin:
        await create_topic(admin, topic, partitions)


async def produce(
    settings: KafkaSettings, topic: str, messages: Sequence[tuple[bytes | None, bytes]]
) -> int:
    """Send every (key, value) and wait until the broker acknowledged all of them."""
    producer = build_producer(settings, linger_ms=5)
    await connection.start(producer, settings)
    progress = _Progress(len(messages)) if len(messages) >= PROGRESS_FROM else None
    try:
        pending = []
        for n, (key, value) in enumerate(messages, 1):
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 1000:
                for fut in pending:
                    await fut
                pending.clear()
                if progress:
                    progress.show(n)
        for fut in pending:
            await fut
    finally:
        await producer.stop()
    if progress:
        progress.show(len(messages), done=True)
    return len(messages)


class _Progress:
    """A one-line bar on stderr, redrawn in place when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._tty = sys.stderr.isatty()

    def show(self, n: int, done: bool = False) -> None:
        width = 30
        filled = width * n // self._total
        line = f"[{'#' * filled}{'.' * (width - filled)}] {n}/{self._total}"
        if self._tty:
            sys.stderr.write(f"\r{line}" + ("\n" if done else ""))
        elif done or n % (self._total // 10 or 1) < 1000:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
