"""How a command module adds its subcommand to the ``recording-consumer`` parser."""

from __future__ import annotations

import argparse
from typing import Protocol


class Subcommands(Protocol):
    """``ArgumentParser.add_subparsers()``'s result, typed without argparse's private class name.

    Each command module has ``add_command(sub: Subcommands, common)``, adding its subcommand with
    the shared `common` options (``--config``) and ``command=`` set to the function that runs it.
    """

    def add_parser(
        self, name: str, *, help: str | None = ..., parents: list[argparse.ArgumentParser] = ...
    ) -> argparse.ArgumentParser: ...
