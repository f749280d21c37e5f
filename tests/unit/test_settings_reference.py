"""The settings reference, ``check-config --defaults``: the real defaults, every key, installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import msgspec

from consumer.cli.reference import defaults_text
from consumer.settings.config import Settings, load_settings
from tests._support.kafka_helpers import REPO

REFERENCE = REPO / "consumer" / "defaults.toml"


def without_settings_environment() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RECORDING_CONSUMER__") and k != "KAFKA_BOOTSTRAP_SERVERS"
    }


def test_reference_states_exactly_the_built_in_defaults() -> None:
    """Loaded as a settings file, the reference gives the settings model's defaults, no more."""
    assert load_settings(REFERENCE, environ={}) == Settings()


def test_reference_names_every_setting_in_its_table() -> None:
    """Every key of every settings table is in the reference, set or commented: none undocumented.

    A key shown commented is one that is unset by default (``# sasl_username = ...``); a table
    of tables is shown by an example (``# [retry.handlers.download]``).
    """
    tables = re.split(r"^#? ?\[(\w+)\]\n", REFERENCE.read_text(), flags=re.M)
    text = dict(zip(tables[1::2], tables[2::2], strict=True))
    settings = msgspec.inspect.type_info(Settings)
    assert isinstance(settings, msgspec.inspect.StructType)
    missing = []
    for table in settings.fields:
        if not isinstance(table.type, msgspec.inspect.StructType):
            continue
        for key in table.type.fields:
            shown = rf"^#? ?({key.name} = |\[{table.name}\.{key.name}[.\]])"
            if not re.search(shown, text.get(table.name, ""), re.M):
                missing.append(f"{table.name}.{key.name}")
    assert missing == []


def test_check_config_defaults_prints_the_reference_with_no_settings_at_hand(
    tmp_path: Path,
) -> None:
    """Exit 0 and the reference on stdout, in a directory without config/ and with a settings
    variable that would fail start-up: the flag reads no settings."""
    env = without_settings_environment() | {"RECORDING_CONSUMER__KAFKA__TOPCI": "typo"}
    result = subprocess.run(
        [sys.executable, "-m", "consumer", "check-config", "--defaults"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == defaults_text() == REFERENCE.read_text()
    printed = tmp_path / "printed.toml"
    printed.write_text(result.stdout)
    assert tomllib.loads(result.stdout)["kafka"]["topic"] == Settings().kafka.topic
    assert load_settings(printed, environ={}) == Settings()


def test_built_wheel_carries_the_reference_and_prints_it(tmp_path: Path) -> None:
    """A wheel built from this tree holds consumer/defaults.toml, and the command run from the
    wheel (not the checkout) prints it: the reference survives ``pip install``."""
    source = tmp_path / "source"
    shutil.copytree(
        REPO / "consumer", source / "consumer", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    built = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"),
            *("--no-index", "--wheel-dir", str(tmp_path / "dist"), str(source)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("recording_consumer-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("consumer/defaults.toml").decode() == REFERENCE.read_text()
    code = (
        "import sys, consumer; from consumer.cli.main import main\n"
        "assert consumer.__file__.startswith(sys.argv[1]), consumer.__file__\n"
        "sys.exit(main(['check-config', '--defaults']))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(wheel)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=without_settings_environment() | {"PYTHONPATH": str(wheel)},
        timeout=60,
        check=False,
    )
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == REFERENCE.read_text()
