"""``check-config --defaults``: every setting with its default and meaning, as commented TOML.

The text is ``consumer/defaults.toml``, package data: it is installed with the package, so the
reference is at hand wherever the command is, with no checkout and no settings file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.resources import files
from typing import Any


def defaults_text() -> str:
    """The settings reference, as installed."""
    return files("consumer").joinpath("defaults.toml").read_text(encoding="utf-8")


class PrintDefaults(argparse.Action):
    """A flag that prints the reference and exits 0, like ``--version``: it acts while the
    arguments are parsed, before any settings are read, so a broken settings file or
    environment cannot hide the reference."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        sys.stdout.write(defaults_text())
        parser.exit(0)
