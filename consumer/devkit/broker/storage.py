"""Kafka's StorageTool (a cluster id, storage formatted for it), run without leaking passwords."""

from __future__ import annotations

import subprocess
from pathlib import Path

from consumer.devkit.broker.home import BrokerError, tail
from consumer.devkit.broker.private import UMASK, write_private


def storage_tool(java: list[str], argfile: Path, *args: str) -> str:
    """Run Kafka's StorageTool with `args` passed in `argfile`, removed afterwards.

    The format arguments may hold a SCRAM password, and any local user can read a command line
    (ps, /proc/<pid>/cmdline); the java launcher reads the main class and its arguments from a
    private ``@file`` instead, so the command line shows only the file's name.
    """
    write_private(
        argfile, "".join(f"{argfile_quoted(a)}\n" for a in ("kafka.tools.StorageTool", *args))
    )
    try:
        done = subprocess.run(
            [*java, f"@{argfile}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            umask=UMASK,
        )
    finally:
        argfile.unlink(missing_ok=True)
    if done.returncode != 0:
        output = tail(done.stdout + done.stderr)
        # Only the subcommand: the arguments may hold a SCRAM password.
        raise BrokerError(f"kafka.tools.StorageTool {args[0]} failed:\n{output}")
    return done.stdout


def argfile_quoted(arg: str) -> str:
    # The java launcher's @file syntax: a double-quoted argument with backslash escapes.
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
