"""``recording-consumer check-config``: validate settings, start the handlers as `run` does, print
the settings (secrets masked) and say which file they came from."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import msgspec

from consumer.cli.reference import PrintDefaults
from consumer.cli.run import routed_handlers
from consumer.cli.subcommands import Subcommands
from consumer.secret import encode_secret
from consumer.settings.config import DEFAULT_CONFIG, Settings, settings_file


def add_command(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    check = sub.add_parser(
        "check-config",
        parents=[common],
        help="validate settings, load and start the handlers as run does (no Kafka), print them",
    )
    check.add_argument(
        "--defaults",
        action=PrintDefaults,
        help="print every setting with its default and meaning (TOML) and exit",
    )
    check.set_defaults(command=command)


def command(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.handler_api import running
    from consumer.plugins.discovery import masked_options
    from consumer.plugins.routing import unrouted_statuses

    handlers = routed_handlers(settings)

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
