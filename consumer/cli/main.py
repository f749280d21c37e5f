"""The ``recording-consumer`` entry point: the parser and its dispatch to one module per command.

Each command module adds its own subcommand (`add_command`) and names the function that runs it;
settings are loaded here, once, and errors become the exit statuses operators script against.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from consumer.cli import check_config, dlq, handlers, ingest, inspect, produce, run
from consumer.errors import ConsumerError, KafkaConnectError
from consumer.kafka.security import checked
from consumer.observability.printable import print_escaped
from consumer.settings.config import load_settings

DESCRIPTION = "The ``recording-consumer`` command: run the worker, check settings, produce events."


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = checked(load_settings(args.config, os.environ), os.environ)
        result: int = args.command(args, settings)
    except KafkaConnectError as exc:
        print_escaped(f"recording-consumer: {exc}", sys.stderr)
        return 1
    except ConsumerError as exc:
        print_escaped(f"recording-consumer: {exc}", sys.stderr)
        return 2
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recording-consumer", description=DESCRIPTION)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        help="settings file (default: config/consumer.toml in the working directory, if present)",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for command in (run, ingest, check_config, produce, inspect, handlers, dlq):
        command.add_command(sub, common)
    return parser
