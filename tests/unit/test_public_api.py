"""The public API: one import, typed for plugin authors, the only names docs and examples use."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

import consumer
from consumer import (
    BaseHandler,
    ConfigError,
    OptionError,
    PluginError,
    make_conference_event,
    make_event,
    retry_after,
    run_handler,
    running,
)
from consumer.plugins.discovery import build_handlers
from consumer.settings.config import PluginSettings
from tests._support.kafka_helpers import REPO
from tests._support.public_names import consumer_names, not_public

FIXTURES = REPO / "tests" / "unit" / "typecheck"
GUIDE = REPO / "docs" / "writing-a-handler.md"


def mypy(*files: Path) -> subprocess.CompletedProcess[str]:
    """mypy --strict on `files` as a plugin's own code, finding `consumer` from this checkout."""
    env = os.environ | {"MYPYPATH": str(REPO)}
    return subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--strict", "--no-error-summary"),
            *("--cache-dir", str(REPO / ".mypy_cache" / "public-api")),
            *map(str, files),
        ],
        env=env,
        cwd=FIXTURES,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_handler_type_checks_and_mistakes_are_type_errors() -> None:
    """A plugin using only public names passes mypy --strict; a misspelt close fails it."""
    result = mypy(FIXTURES / "notify_handler.py", FIXTURES / "misspelt_close.py")
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if "notify_handler.py" in e], result.stdout
    bad = (FIXTURES / "misspelt_close.py").read_text().splitlines()
    expected = {n for n, line in enumerate(bad, 1) if "# error:" in line}
    found = {int(e.split(":")[1]) for e in errors if "misspelt_close.py" in e}
    assert found == expected, result.stdout
    assert any('"clsoe" is marked as an override' in e for e in errors), result.stdout
    assert result.returncode == 1


def test_package_ships_py_typed() -> None:
    """`py.typed` exists and setuptools is told to package it, so installed copies are typed."""
    assert (REPO / "consumer" / "py.typed").is_file()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["consumer"]


def test_every_exported_name_resolves_and_version_comes_from_metadata() -> None:
    """Each name in ``consumer.__all__`` exists (the kit's load on first use)."""
    for name in consumer.__all__:
        assert getattr(consumer, name) is not None, name
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert consumer.__version__ == pyproject["project"]["version"]
    with pytest.raises(AttributeError):
        consumer.no_such_name  # noqa: B018


def _guide_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)\n```", GUIDE.read_text(), re.S)


def test_example_plugin_and_guide_use_only_public_names() -> None:
    """The examples, their tests and the guide's code reach `consumer` only through __all__."""
    sources = sorted((REPO / "examples").rglob("*.py"))
    assert len(sources) >= 4
    for path in sources:
        used = consumer_names(ast.parse(path.read_text()))
        assert used, f"{path} does not use consumer at all: the scan would prove nothing"
        assert not not_public(used), f"{path.relative_to(REPO)}: {not_public(used)}"
    blocks = _guide_python_blocks()
    assert len(blocks) >= 8
    for block in blocks:
        # Indented excerpts (methods) parse once wrapped in a class.
        text = block if not block.startswith(" ") else "class _:\n" + block
        assert not not_public(consumer_names(ast.parse(text))), block
    assert "consumer." not in "".join(blocks).replace("consumer.toml", "")


def test_the_scan_catches_a_private_import() -> None:
    """The scan above is not vacuous: private modules and unexported names are reported."""
    code = (
        "from consumer.handler_api import Context\n"
        "from consumer import _KIT\n"
        "import consumer.deadletters.commands\n"
    )
    assert not_public(consumer_names(ast.parse(code))) == [
        "consumer.handler_api:Context",
        "consumer:_KIT",
        "consumer.deadletters.commands",
    ]


class CheckedOptions(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    retries: int = 3


class Checked(BaseHandler):
    """Refuses its options in __init__ or in start, naming only the option."""

    Options = CheckedOptions

    def __init__(self, options: CheckedOptions) -> None:
        if options.retries < 1:
            raise OptionError("retries", "must be at least 1")
        self.started = False

    async def start(self) -> None:
        if self.started:
            raise OptionError("url", "unreachable")
        self.started = True

    async def handle(self, event: object, ctx: object) -> None:
        pass


def test_option_errors_are_keyed_by_the_registered_name() -> None:
    """Missing, invalid and handler-refused options are all ``handlers.<alias>.<option>``."""
    plugins = PluginSettings(paths={"notify_alias": "tests.unit.test_public_api:Checked"})
    with pytest.raises(
        PluginError, match=r"^handlers\.notify_alias\.url: required key is missing$"
    ):
        build_handlers(["notify_alias"], {"notify_alias": {}}, plugins)
    with pytest.raises(ConfigError) as refused:
        build_handlers(["notify_alias"], {"notify_alias": {"url": "u", "retries": 0}}, plugins)
    assert str(refused.value) == "handlers.notify_alias.retries: must be at least 1"
    assert refused.value.key == "handlers.notify_alias.retries"


async def test_option_error_from_start_is_keyed_by_the_registered_name() -> None:
    """`running` (the worker's lifecycle) keys a start-time OptionError the same way."""
    handler = Checked(CheckedOptions(url="u"))
    handler.started = True
    with pytest.raises(ConfigError) as refused:
        async with running(handler, "notify_alias"):
            pass
    assert refused.value.key == "handlers.notify_alias.url"
    with pytest.raises(ConfigError, match=r"^handlers\.kit\.url: unreachable$"):
        await run_handler(handler, make_event(), name="kit")


def test_subject_id_is_the_call_or_the_conference() -> None:
    """Both event types answer `subject_id`: no isinstance check needed."""
    call, conference = make_event(call_id="c-1"), make_conference_event(conference_id="conf-1")
    assert (call.subject_id, conference.subject_id) == ("c-1", "conf-1")


def test_retry_after_reads_seconds_and_dates() -> None:
    """Delta-seconds, an HTTP date (future, past), and garbage or absence."""
    now = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
    assert retry_after("120", now=now) == 120.0
    assert retry_after("Fri, 27 Nov 2026 10:01:30 GMT", now=now) == 90.0
    assert retry_after("Fri, 27 Nov 2026 09:00:00 GMT", now=now) == 0.0
    assert retry_after("soon", now=now) is None
    assert retry_after(None) is None
