"""The ``recording-consumer`` command: run the worker, check settings, produce events."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from consumer.config import DEFAULT_CONFIG, Settings, load_settings, settings_file
from consumer.engine.printable import print_escaped
from consumer.errors import ConfigError, ConsumerError, KafkaConnectError, UnreadableBatch
from consumer.secret import encode_secret

if TYPE_CHECKING:
    from consumer.config import KafkaSettings
    from consumer.engine.worker import Worker
    from consumer.interface import Handler

EXIT_UNREADABLE = 3
"""`run` stopped on a batch it cannot read (2 is a settings error)."""
EXIT_SKIPPED = 4
"""`dlq replay` passed over dead letters it cannot replay (one line each); the rest went."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, os.environ)
        result: int = args.command(args, settings)
    except KafkaConnectError as exc:
        print_escaped(f"recording-consumer: {exc}", sys.stderr)
        return 1
    except ConsumerError as exc:
        print_escaped(f"recording-consumer: {exc}", sys.stderr)
        return 2
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recording-consumer", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        help="settings file (default: config/consumer.toml in the working directory, if present)",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="consume and handle events until stopped")
    run.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        help="exit once everything fetched is committed and nothing arrived for this long",
    )
    run.set_defaults(command=_run)

    ingest = sub.add_parser(
        "ingest", parents=[common], help="take Bandwidth's HTTP callbacks and produce them to Kafka"
    )
    ingest.set_defaults(command=_ingest)

    check = sub.add_parser(
        "check-config",
        parents=[common],
        help="validate settings, load and start the handlers as run does (no Kafka), print them",
    )
    check.set_defaults(command=_check_config)

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
    produce.set_defaults(command=_produce)

    inspect = sub.add_parser(
        "inspect", parents=[common], help="show how JSON lines decode and where they route"
    )
    inspect.add_argument("file", nargs="?", default="-", help="JSON lines, or - for stdin")
    inspect.set_defaults(command=_inspect)

    handlers = sub.add_parser(
        "handlers", parents=[common], help="list the handlers found, with their options"
    )
    handlers.set_defaults(command=_handlers)

    dlq = sub.add_parser("dlq", help="dead letters: list them, or put them back on the topic")
    dlq_sub = dlq.add_subparsers(required=True, metavar="ACTION")
    show = dlq_sub.add_parser("show", parents=[common], help="list dead letters and why")
    show.add_argument("--limit", type=int, help="at most this many")
    show.set_defaults(command=_dlq_show)
    replay = dlq_sub.add_parser(
        "replay", parents=[common], help="republish dead letters to the worker's topic"
    )
    replay.add_argument("--error-class", help="only dead letters with this error class")
    replay.add_argument("--handler", help="only dead letters of this handler")
    replay.add_argument("--recording-id", help="only dead letters of this recording")
    replay.add_argument("--dry-run", action="store_true", help="print, publish nothing")
    replay.add_argument(
        "--to",
        metavar="TOPIC",
        help="topic to republish to (default: kafka.topic; never a dead letter's own header)",
    )
    replay.add_argument(
        "--group",
        help="consumer group that remembers replay progress (default: <group_id>.dlq-replay)",
    )
    replay.set_defaults(command=_dlq_replay)
    return parser


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.engine.logs import configure_logging
    from consumer.engine.worker import Worker
    from consumer.observability import tracing
    from consumer.observability.observers import Observers
    from consumer.observability.server import endpoint, listen_address
    from consumer.serving import raise_fd_limit

    listen_address(settings.observability.listen)  # a malformed address fails before anything
    configure_logging(settings.logging)
    raise_fd_limit()
    tracing.start_from_environment()  # before its observers: the worker is traced or not
    observers = Observers(settings)
    worker = Worker(settings, _routed_handlers(settings), observers)
    _tune_garbage_collection()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        async with endpoint(worker, observers):
            await worker.run(until_idle=args.until_idle)

    try:
        asyncio.run(serve())
    except UnreadableBatch:
        return EXIT_UNREADABLE  # the worker logged where and why
    if args.until_idle is not None:
        _print_summary(worker)
    return 0


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.ingress.command import ingest

    return ingest(settings)


def _tune_garbage_collection() -> None:
    """The worker process allocates a few small objects per message and keeps few of them:
    reference counting frees them, and the cyclic collector would mostly rescan the modules,
    classes and settings loaded at start-up. Those are frozen out of its scans, and it runs
    after 10,000 new objects instead of 700 (measured: about a tenth of a logged message's cost)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])


def _print_summary(worker: Worker) -> None:
    lines = ["", "Routed (status -> handler: events):"]
    for (status, handler), count in sorted(worker.tally.routed.items()):
        lines.append(f"  {status:<12} -> {handler}: {count}")
    lines.append(
        "Outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(worker.tally.outcomes.items()))
    )
    for line in lines:
        print_escaped(line, sys.stderr)


def _routed_handlers(settings: Settings) -> dict[str, Handler]:
    """Every handler a route names, loaded and built from its options, as `run` starts them."""
    from consumer.engine.plugins import build_handlers

    names = {name for route in settings.routes.values() for name in route}
    return build_handlers(names, settings.handlers, settings.plugins)


def _check_config(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.engine.plugins import masked_options
    from consumer.engine.routing import unrouted_statuses
    from consumer.interface import running

    handlers = _routed_handlers(settings)

    async def start_and_close() -> None:
        # The start-up errors run would meet after connecting: missing credentials and the like.
        for name, handler in handlers.items():
            async with running(handler, name):
                pass

    asyncio.run(start_and_close())
    options = masked_options(settings.handlers, settings.plugins)
    shown = msgspec.structs.replace(settings, handlers=options)
    encoded = msgspec.json.encode(shown, enc_hook=encode_secret)
    print(msgspec.json.format(encoded, indent=2).decode())
    print(_settings_source(args.config), file=sys.stderr)
    unrouted = unrouted_statuses(settings.routes)
    if unrouted:
        print(
            f"routes: no route for {', '.join(unrouted)} and no `default`: those events will be "
            "unrouted (a [routes] table replaces the built-in routes, default included)",
            file=sys.stderr,
        )
    return 0


def _settings_source(config: Path | None) -> str:
    """Where the settings came from, naming a default file read from the working directory."""
    source = settings_file(config)
    if config is not None:
        return f"settings file: {config} (--config)"
    if source is None:
        return (
            f"settings file: none (no --config, and no {DEFAULT_CONFIG} in the working "
            "directory): built-in defaults and the environment"
        )
    return (
        f"settings file: {source.resolve()} (no --config given, so the working directory's "
        f"{DEFAULT_CONFIG} was read: it is trusted like code; pass --config to choose)"
    )


def _inspect(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.tools.inspect import inspect_lines

    if args.file == "-":
        return inspect_lines(sys.stdin.buffer, settings, sys.stdout)
    try:
        with Path(args.file).open("rb") as lines:
            return inspect_lines(lines, settings, sys.stdout)
    except OSError as exc:
        raise ConfigError(f"cannot read {args.file}: {exc.strerror}") from None


def _handlers(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.engine.plugins import describe

    for name, origin, options in describe(settings.plugins):
        print(f"{name}  ({origin})")
        for option, type_name, default in options:
            print(f"    {option}: {type_name} = {default}")
    return 0


def _dlq_show(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.engine.deadletter_publisher import dead_letter_topic
    from consumer.tools.deadletter_commands import show

    asyncio.run(_reach(settings.kafka))
    count = asyncio.run(show(settings.kafka, dead_letter_topic(settings), args.limit, sys.stdout))
    print(f"{count} dead letters", file=sys.stderr)
    return 0


def _dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.engine.deadletter_publisher import dead_letter_topic
    from consumer.observability import tracing
    from consumer.tools.deadletter_commands import replay

    tracing.start_from_environment()
    asyncio.run(_reach(settings.kafka))
    counts = asyncio.run(
        replay(
            settings.kafka,
            dead_letter_topic(settings),
            args.group or f"{settings.kafka.group_id}.dlq-replay",
            to=args.to or settings.kafka.topic,
            error_class=args.error_class,
            handler=args.handler,
            recording_id=args.recording_id,
            dry_run=args.dry_run,
            out=sys.stdout,
            max_request_size=settings.dead_letter.max_request_size,
        )
    )
    verb = "would replay" if args.dry_run else "replayed"
    skipped = f"; skipped {counts.skipped} that cannot be replayed" if counts.skipped else ""
    print(f"{verb} {counts.replayed} dead letters{skipped}", file=sys.stderr)
    return EXIT_SKIPPED if counts.skipped else 0


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.devkit.samples import sample_messages
    from consumer.tools.produce import ensure_topic, produce

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
        await _reach(kafka)
        await ensure_topic(kafka, topic, args.partitions)
        return await produce(kafka, topic, messages)

    count = asyncio.run(publish())
    print(f"produced {count} messages to {topic}", file=sys.stderr)
    return 0


async def _reach(kafka: KafkaSettings) -> None:
    """Wait for the broker like the worker does, reporting on stderr (stdout may be data)."""
    from consumer.observability.startup import wait_for_kafka

    def waiting(attempt: int, error: str, left: float) -> None:
        print_escaped(
            f"recording-consumer: Kafka at {kafka.bootstrap_servers} not reachable yet "
            f"(attempt {attempt}: {error}); retrying for {left:.0f} s more",
            sys.stderr,
        )

    await wait_for_kafka(kafka, waiting)
