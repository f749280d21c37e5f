"""``recording-consumer produce``: publish events to the topic, for demos, load tests and
replaying captured callbacks (a file of JSON lines, or the built-in samples)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from consumer.cli.reach import reach
from consumer.cli.samples import sample_messages
from consumer.cli.subcommands import Subcommands
from consumer.kafka import connection
from consumer.kafka.clients import build_producer
from consumer.kafka.topics import admin_client, create_topic
from consumer.settings.config import KafkaSettings, Settings

PROGRESS_FROM = 10_000
"""Below this many messages a progress bar is noise."""


def add_command(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    produce = sub.add_parser("produce", parents=[common], help="publish events to the topic")
    source = produce.add_mutually_exclusive_group()
    source.add_argument("--file", type=Path, help="JSON lines to publish, one event per line")
    source.add_argument(
        "--repeat", type=int, default=1, help="times to repeat the built-in sample set"
    )
    produce.add_argument("--topic", help="default: kafka.topic from the settings")
    produce.add_argument(
        "--partitions", type=int, default=6, help="partitions if the topic is created"
    )
    produce.add_argument(
        "--compression",
        choices=["none", "gzip", "snappy", "lz4", "zstd"],
        help="codec of the produced batches (default: kafka.compression_type)",
    )
    produce.set_defaults(command=command)


def command(args: argparse.Namespace, settings: Settings) -> int:
    topic = args.topic or settings.kafka.topic
    kafka = settings.kafka
    if args.compression is not None:
        kafka = msgspec.structs.replace(kafka, compression_type=args.compression)
    if args.file:
        lines = args.file.read_bytes().splitlines()
        messages: list[tuple[bytes | None, bytes]] = [
            (None, line) for line in lines if line.strip()
        ]
    else:
        messages = sample_messages(args.repeat)

    async def publish() -> int:
        await reach(kafka)
        await ensure_topic(kafka, topic, args.partitions)
        return await produce(kafka, topic, messages)

    count = asyncio.run(publish())
    print(f"produced {count} messages to {topic}", file=sys.stderr)
    return 0


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
