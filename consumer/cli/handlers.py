"""``recording-consumer handlers``: list the handlers found, with their options."""

from __future__ import annotations

import argparse

from consumer.cli.subcommands import Subcommands
from consumer.settings.config import Settings


def add_command(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    handlers = sub.add_parser(
        "handlers", parents=[common], help="list the handlers found, with their options"
    )
    handlers.set_defaults(command=command)


def command(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.plugins.discovery import available_handlers

    for name, origin, options in available_handlers(settings.plugins):
        print(f"{name}  ({origin})")
        for option, type_name, default in options:
            print(f"    {option}: {type_name} = {default}")
    return 0
