"""``recording-consumer ingest``: take Bandwidth's HTTP callbacks and produce them to Kafka."""

from __future__ import annotations

import argparse

from consumer.cli.subcommands import Subcommands
from consumer.settings.config import Settings


def add_command(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    ingest = sub.add_parser(
        "ingest", parents=[common], help="take Bandwidth's HTTP callbacks and produce them to Kafka"
    )
    ingest.set_defaults(command=command)


def command(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.ingress.command import ingest

    return ingest(settings)
