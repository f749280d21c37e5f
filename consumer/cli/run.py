"""``recording-consumer run``: consume and handle events until stopped (or idle)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING

from consumer.cli.subcommands import Subcommands
from consumer.errors import UnreadableBatch
from consumer.gc_tuning import freeze_start_up_objects
from consumer.observability.printable import print_escaped
from consumer.settings.config import Settings

if TYPE_CHECKING:
    from consumer.engine.worker import Worker
    from consumer.handler_api import Handler

EXIT_UNREADABLE = 3
"""`run` stopped on a batch it cannot read (2 is a settings error)."""


def add_command(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    run = sub.add_parser("run", parents=[common], help="consume and handle events until stopped")
    run.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        help="exit once everything fetched is committed and nothing arrived for this long",
    )
    run.set_defaults(command=command)


def command(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.engine.worker import Worker
    from consumer.observability import tracing
    from consumer.observability.logs import configure_logging
    from consumer.observability.observers import Observers
    from consumer.observability.server import endpoint
    from consumer.observability.serving import raise_fd_limit

    configure_logging(settings.logging)
    raise_fd_limit()
    tracing.start_from_environment()  # before its observers: the worker is traced or not
    observers = Observers(settings)
    worker = Worker(settings, routed_handlers(settings), observers)
    freeze_start_up_objects()

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


def routed_handlers(settings: Settings) -> dict[str, Handler]:
    """Every handler a route names, loaded and built from its options, as `run` starts them."""
    from consumer.plugins.discovery import build_handlers

    names = {name for route in settings.routes.values() for name in route}
    return build_handlers(names, settings.handlers, settings.plugins)


def _print_summary(worker: Worker) -> None:
    lines = ["", "Routed (status -> handler: events):"]
    for (status, handler), count in sorted(worker.tally.routed.items()):
        lines.append(f"  {status:<12} -> {handler}: {count}")
    if worker.tally.skipped_by:
        lines.append("Skipped on purpose (handler: events):")
        lines += [f"  {name}: {n}" for name, n in sorted(worker.tally.skipped_by.items())]
    lines.append(
        "Outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(worker.tally.outcomes.items()))
    )
    for line in lines:
        print_escaped(line, sys.stderr)
