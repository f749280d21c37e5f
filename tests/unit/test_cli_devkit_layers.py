"""The command line (layer 6) and the dev kit (layer 7) import one way: the dev kit may build on
the command line's layer and below, the command line never loads the dev kit."""

from __future__ import annotations

import subprocess
import sys

from tests._support.kafka_helpers import REPO

_LOADED = "import sys; import {modules}; print('\\n'.join(sorted(sys.modules)))"


def _loaded_by(*modules: str) -> list[str]:
    """Every module a fresh interpreter has loaded after importing `modules`."""
    code = _LOADED.format(modules=", ".join(modules))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    return done.stdout.split()


def test_the_command_line_loads_no_dev_kit() -> None:
    """Every command's module, and the entry point, load nothing of ``consumer.devkit``."""
    commands = [
        f"consumer.cli.{name}"
        for name in ("main", "run", "ingest", "check_config", "produce", "inspect", "handlers")
    ]
    loaded = _loaded_by(*commands, "consumer.cli.dlq", "consumer.cli.samples")
    assert "consumer.cli.main" in loaded
    assert [name for name in loaded if name.startswith("consumer.devkit")] == []


def test_the_testing_kit_and_broker_load_no_command_line() -> None:
    """The testing kit, its pytest plugin and the local broker produce and read through the
    Kafka layer, not through the command line's modules."""
    loaded = _loaded_by(
        "consumer.devkit.testing", "consumer.devkit.pytest_plugin", "consumer.devkit.broker"
    )
    assert "consumer.devkit.testing" in loaded
    assert [name for name in loaded if name.startswith("consumer.cli")] == []
