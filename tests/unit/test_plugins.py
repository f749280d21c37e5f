"""Handler discovery: entry points, ``module:attribute`` paths, name clashes, the allow-list,
option validation, and the ``recording-consumer handlers`` listing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from consumer.errors import PluginError
from consumer.handlers.download import DownloadHandler
from consumer.handlers.log import LogHandler
from consumer.plugins.discovery import available_handlers, build_handlers, discover
from consumer.settings.config import PluginSettings, load_settings
from tests._support.kafka_helpers import REPO, Recorder

EXAMPLE = "examples/recording-consumer-audit"
NOT_INSTALLED = f"the example plugin is not installed: pip install -e {EXAMPLE} (make install)"


def cli(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """``recording-consumer ARGS --config tests/_support/minimal.toml`` with
    ``RECORDING_CONSUMER__`` overrides from `settings`; nothing else from the caller's settings
    environment leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECORDING_CONSUMER__")}
    env |= {f"RECORDING_CONSUMER__{k}": v for k, v in settings.items()}
    env["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"  # nothing here may need a broker
    command = [sys.executable, "-m", "consumer", *args, "--config", "tests/_support/minimal.toml"]
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)


def plugin_module(directory: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh importable module holding `Stamp`, a handler with options; returns its name."""
    name = f"paths_plugin_{uuid.uuid4().hex[:8]}"
    (directory / f"{name}.py").write_text(
        "import msgspec\n"
        "class StampOptions(msgspec.Struct, forbid_unknown_fields=True):\n"
        "    label: str\n"
        "    repeat: int = 1\n"
        "class Stamp:\n"
        "    Options = StampOptions\n"
        "    def __init__(self, options):\n"
        "        self.options = options\n"
        "    async def handle(self, event, ctx):\n"
        "        pass\n"
    )
    monkeypatch.syspath_prepend(str(directory))
    return name


def fake_distribution(directory: Path, monkeypatch: pytest.MonkeyPatch, claims: str) -> None:
    """An installed-looking distribution ``fake-plugins 9.9`` whose entry point claims `claims`."""
    info = directory / "fake_plugins-9.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugins\nVersion: 9.9\n")
    (info / "entry_points.txt").write_text(
        f"[recording_consumer.handlers]\n{claims} = fake_plugins:Handler\n"
    )
    monkeypatch.syspath_prepend(str(directory))


def test_builtin_handlers_are_found_by_entry_point() -> None:
    """download, log and publish come from recording-consumer's own entry points."""
    found = discover(PluginSettings())
    for name, value in [
        ("download", "consumer.handlers.download:DownloadHandler"),
        ("log", "consumer.handlers.log:LogHandler"),
        ("publish", "consumer.handlers.publish:PublishHandler"),
    ]:
        dist = found[name].dist
        assert found[name].value == value
        assert dist is not None
        assert dist.name == "recording-consumer"
    handlers = build_handlers(["log", "download"], {}, PluginSettings())
    assert isinstance(handlers["log"], LogHandler)
    assert isinstance(handlers["download"], DownloadHandler)


def test_installed_example_package_is_found_by_entry_point(tmp_path: Path) -> None:
    """The example package's `audit` entry point is discovered and built with its options."""
    found = discover(PluginSettings())
    assert "audit" in found, NOT_INSTALLED
    dist = found["audit"].dist
    assert dist is not None
    assert dist.name == "recording-consumer-audit"
    path = str(tmp_path / "audit.jsonl")
    (handler,) = build_handlers(["audit"], {"audit": {"path": path}}, PluginSettings()).values()
    assert type(handler).__module__ == "recording_consumer_audit"
    assert type(handler).__name__ == "AuditLogHandler"


def test_dotted_path_plugin_is_found_and_gets_its_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``[plugins] paths`` entry names a handler by module:attribute; options still apply."""
    module = plugin_module(tmp_path, monkeypatch)
    settings = PluginSettings(
        paths={"stamp": f"{module}:Stamp", "recorder": "tests._support.kafka_helpers:Recorder"}
    )
    handlers = build_handlers(["stamp", "recorder"], {"stamp": {"label": "x"}}, settings)
    assert isinstance(handlers["recorder"], Recorder)
    options = handlers["stamp"].options  # type: ignore[attr-defined]
    assert (options.label, options.repeat) == ("x", 1)
    described = {name: (origin, opts) for name, origin, opts in available_handlers(settings)}
    assert described["stamp"] == (
        f"config plugins ({module}:Stamp)",
        [("label", "str", "(required)"), ("repeat", "int", "1")],
    )


def test_dotted_path_that_does_not_load_is_an_error() -> None:
    """A path to a missing module or attribute fails start-up, naming handler and path."""
    settings = PluginSettings(paths={"ghost": "tests._support.kafka_helpers:NoSuchHandler"})
    with pytest.raises(
        PluginError, match=r"handler 'ghost' \(tests\._support\.kafka_helpers:NoSuchHandler\)"
    ):
        build_handlers(["ghost"], {}, settings)


def test_unknown_name_lists_the_available_handlers() -> None:
    """A route naming no handler fails, listing every name that would have worked."""
    settings = PluginSettings(paths={"recorder": "tests._support.kafka_helpers:Recorder"})
    with pytest.raises(PluginError) as info:
        build_handlers(["log", "dowload"], {}, settings)
    message = str(info.value)
    assert message.startswith("unknown handler 'dowload'; available handlers: ")
    available = message.rpartition(": ")[2].split(", ")
    assert {"download", "log", "publish", "recorder"} <= set(available)
    assert available == sorted(available)


def test_options_for_a_handler_that_does_not_exist_are_an_error() -> None:
    """A ``[handlers.<typo>]`` section fails start-up instead of being ignored."""
    with pytest.raises(PluginError, match=r"^handlers\.downlaod: unknown handler 'downlaod'"):
        build_handlers(["log"], {"downlaod": {"directory": "x"}}, PluginSettings())


def test_paths_entry_reusing_an_installed_name_names_both_claimants() -> None:
    """A config path may not shadow an installed handler: both sources are named."""
    settings = PluginSettings(paths={"log": "tests._support.kafka_helpers:Recorder"})
    with pytest.raises(PluginError) as info:
        build_handlers(["download"], {}, settings)
    assert str(info.value) == (
        "handler name 'log' is claimed by both "
        "recording-consumer 0.1.0 (consumer.handlers.log:LogHandler) "
        "and config plugins (tests._support.kafka_helpers:Recorder)"
    )


def test_paths_entry_identical_to_the_entry_point_is_no_clash() -> None:
    """Naming the same object twice is harmless and allowed."""
    settings = PluginSettings(paths={"log": "consumer.handlers.log:LogHandler"})
    assert isinstance(build_handlers(["log"], {}, settings)["log"], LogHandler)


def test_two_distributions_claiming_a_name_names_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second installed package claiming `log` stops discovery, naming both packages."""
    fake_distribution(tmp_path, monkeypatch, claims="log")
    with pytest.raises(PluginError) as info:
        discover(PluginSettings())
    message = str(info.value)
    assert message.startswith("handler name 'log' is claimed by both ")
    assert "recording-consumer 0.1.0 (consumer.handlers.log:LogHandler)" in message
    assert "fake-plugins 9.9 (fake_plugins:Handler)" in message


def test_allow_list_hides_other_installed_handlers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only allowed entry points are available; an unallowed clashing package is no clash."""
    fake_distribution(tmp_path, monkeypatch, claims="log")
    settings = PluginSettings(
        allow=["download", "recorder"], paths={"recorder": "tests._support.kafka_helpers:Recorder"}
    )
    assert sorted(discover(settings)) == ["download", "recorder"]
    with pytest.raises(PluginError) as info:
        build_handlers(["download", "log"], {}, settings)
    message = str(info.value)
    assert message.startswith("handler 'log' is installed (")
    assert message.endswith(
        "but not in plugins.allow ['download', 'recorder']; available handlers: download, recorder"
    )


def test_route_to_a_disallowed_handler_fails_start_up() -> None:
    """`run` exits 2 before consuming when a route names an installed but unallowed handler."""
    result = cli("run", PLUGINS__ALLOW='["log"]', ROUTES__COMPLETE='["log", "publish"]')
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("recording-consumer: handler 'publish' is installed (")
    assert "not in plugins.allow ['log']; available handlers: log" in result.stderr


def test_wrong_handler_option_fails_start_up_naming_handler_and_key() -> None:
    """`run` exits 2 with the dotted key of a misspelt option, before touching Kafka."""
    result = cli("run", ROUTES__COMPLETE='["download"]', HANDLERS__DOWNLOAD__DIRECTRY="x")
    assert (result.returncode, result.stderr) == (
        2,
        "recording-consumer: handlers.download.directry: unknown key\n",
    )


def test_wrong_handler_option_type_names_the_key() -> None:
    """A value of the wrong type is reported with its key and the expected type."""
    with pytest.raises(PluginError, match=r"^handlers\.download\.max_bytes: Expected `int`"):
        build_handlers(["download"], {"download": {"max_bytes": "1 GB"}}, PluginSettings())
    with pytest.raises(PluginError, match=r"^handler 'log' takes no options, got: level$"):
        build_handlers(["log"], {"log": {"level": "debug"}}, PluginSettings())


def test_handlers_command_lists_names_origins_and_options() -> None:
    """`handlers` prints each handler's origin (package and version, or config) and options."""
    result = cli("handlers", PLUGINS__PATHS__RECORDER="tests._support.kafka_helpers:Recorder")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    heads = [line for line in lines if not line.startswith(" ")]
    assert heads == [
        "audit  (recording-consumer-audit 0.1.0 (recording_consumer_audit:AuditLogHandler))",
        "download  (recording-consumer 0.1.0 (consumer.handlers.download:DownloadHandler))",
        "log  (recording-consumer 0.1.0 (consumer.handlers.log:LogHandler))",
        "publish  (recording-consumer 0.1.0 (consumer.handlers.publish:PublishHandler))",
        "recorder  (config plugins (tests._support.kafka_helpers:Recorder))",
    ], NOT_INSTALLED
    for option in [
        "    path: str = 'audit/recordings.jsonl'",
        "    fsync: bool = True",
        "    destination: str = 'recordings'",
        "    directory: str | None = None",
        "    auth: Literal['oauth2', 'basic'] = 'oauth2'",
        "    client_id_file: str | None = None",
        "    allowed_hosts: tuple[str, ...] = ('voice.bandwidth.com',)",
        "    max_bytes: int = 1073741824",
        "    payload: Literal['original', 'normalised'] = 'original'",
    ]:
        assert option in lines
    assert lines[lines.index(heads[1]) + 1] == "    destination: str = 'recordings'"


def test_handlers_command_honours_the_allow_list() -> None:
    """With an allow-list, other installed handlers are not listed."""
    result = cli("handlers", PLUGINS__ALLOW='["audit", "log"]')
    assert result.returncode == 0, result.stderr
    heads = [line.split()[0] for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert heads == ["audit", "log"]


GUIDE = REPO / "docs" / "writing-a-handler.md"
_BLOCK = re.compile(
    r"<!-- (?P<kind>from: \S+|settings(?:: load only)?) -->\n```\w+\n(.*?)\n```", re.S
)


def test_guide_code_is_copied_from_real_sources() -> None:
    """Every ``from:`` block of the guide appears, line for line, in the file it names."""
    blocks = [(m["kind"][6:], m[2]) for m in _BLOCK.finditer(GUIDE.read_text())]
    sources = [source for source, _ in blocks if source.startswith(("consumer", "examples"))]
    assert len(sources) >= 10
    for source, block in blocks:
        if source in sources:
            assert block in (REPO / source).read_text(), f"{GUIDE.name}: not in {source}:\n{block}"


def test_guide_settings_load_and_build(tmp_path: Path) -> None:
    """Every settings block of the guide is valid; unless marked "load only", its handlers build."""
    blocks = [(m["kind"], m[2]) for m in _BLOCK.finditer(GUIDE.read_text())]
    checked = [(kind, text) for kind, text in blocks if kind.startswith("settings")]
    assert len(checked) >= 3
    for n, (kind, text) in enumerate(checked):
        path = tmp_path / f"settings-{n}.toml"
        path.write_text(text)
        settings = load_settings(path, environ={})
        if kind == "settings":
            names = {name for route in settings.routes.values() for name in route}
            assert build_handlers(names, settings.handlers, settings.plugins), text


def test_path_cannot_take_the_name_of_a_hidden_installed_handler() -> None:
    """A `paths` entry reusing an installed name fails even when the allow-list hides it."""
    settings = PluginSettings(
        allow=["log"], paths={"download": "tests._support.kafka_helpers:Recorder"}
    )
    with pytest.raises(PluginError, match="handler name 'download' is claimed by both"):
        discover(settings)


def marking_module(directory: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A module that leaves a mark when imported and when its `touch` is called."""
    name, marks = f"marking_{uuid.uuid4().hex[:8]}", directory / "marks"
    (directory / f"{name}.py").write_text(
        "import pathlib\n"
        f"MARKS = pathlib.Path({str(marks)!r})\n"
        "with MARKS.open('a') as f:\n"
        "    f.write('imported\\n')\n"
        "def touch():\n"
        "    with MARKS.open('a') as f:\n"
        "        f.write('called\\n')\n"
    )
    monkeypatch.syspath_prepend(str(directory))
    return name, marks


def test_allow_list_applies_to_paths_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A path outside plugins.allow is neither available nor imported, by run or `handlers`."""
    module, marks = marking_module(tmp_path, monkeypatch)
    settings = PluginSettings(allow=["log"], paths={"marker": f"{module}:touch"})
    assert sorted(discover(settings)) == ["log"]
    with pytest.raises(PluginError) as info:
        build_handlers(["marker"], {}, settings)
    assert str(info.value) == (
        f"handler 'marker' is in plugins.paths ({module}:touch) but not in plugins.allow "
        "['log']; available handlers: log"
    )
    assert [name for name, _, _ in available_handlers(settings)] == ["log"]
    listed = cli(
        "handlers",
        PLUGINS__ALLOW='["log"]',
        PLUGINS__PATHS__MARKER=f"{module}:touch",
    )
    assert listed.returncode == 0, listed.stderr
    assert not marks.exists(), "a path outside the allow-list was imported"


def test_a_path_to_something_else_is_refused_before_it_is_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path naming a plain function (like os:getpid) fails start-up without calling it."""
    module, marks = marking_module(tmp_path, monkeypatch)
    for value in (f"{module}:touch", "os:getpid"):
        with pytest.raises(PluginError) as info:
            build_handlers(["thing"], {}, PluginSettings(paths={"thing": value}))
        assert str(info.value) == (
            f"handler 'thing' ({value}) is not a handler: "
            "expected a class with an async handle(event, ctx) method"
        )
    assert marks.read_text() == "imported\n", "the function was called"
