"""Settings: the file, the environment overrides, and start-up failures that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from consumer.errors import ConfigError
from consumer.plugins.discovery import build_handlers
from consumer.settings.config import Settings, load_settings
from tests._support.kafka_helpers import REPO


def check_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", "check-config", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )


def test_shipped_config_states_the_defaults() -> None:
    """config/consumer.toml (the image's settings) is the built-in defaults, plus a route per
    status; the commented reference of every key is consumer/defaults.toml."""
    settings = load_settings(REPO / "config" / "consumer.toml", environ={})
    statuses = ("processing", "partial", "complete", "deleted", "error", "default")
    assert settings == Settings(routes={status: ["log"] for status in statuses})


def test_unknown_key_exits_non_zero_naming_it(tmp_path: Path) -> None:
    """A misspelt key stops start-up with its dotted name and exit status 2."""
    config = tmp_path / "c.toml"
    config.write_text('[kafka]\ntopci = "x"\n')
    result = check_config("--config", str(config))
    assert result.returncode == 2
    assert "kafka.topci: unknown key" in result.stderr


def test_wrong_type_exits_non_zero_naming_it(tmp_path: Path) -> None:
    """A value of the wrong type stops start-up naming the key and the expected type."""
    config = tmp_path / "c.toml"
    config.write_text('[engine]\ncommit_every = "often"\n')
    result = check_config("--config", str(config))
    assert result.returncode == 2
    assert "engine.commit_every: Expected `int`, got `str`" in result.stderr


def test_missing_file_exits_non_zero_naming_it(tmp_path: Path) -> None:
    """A config path that does not exist stops start-up naming the path."""
    result = check_config("--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert f"config file not found: {tmp_path / 'nope.toml'}" in result.stderr


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    """A file that is not TOML is reported as such, with its path."""
    config = tmp_path / "c.toml"
    config.write_text("[kafka\n")
    with pytest.raises(ConfigError, match=r"c\.toml is not valid TOML"):
        load_settings(config, environ={})


def test_route_entry_of_wrong_type_names_the_status() -> None:
    """A route that is not a list of names is reported under routes.<status>."""
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"RECORDING_CONSUMER__ROUTES__COMPLETE": "log"})
    assert info.value.key == "routes.complete"
    assert "RECORDING_CONSUMER__ROUTES__COMPLETE" in str(info.value)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    """KAFKA_BOOTSTRAP_SERVERS and RECORDING_CONSUMER__* replace file values, typed as TOML."""
    config = tmp_path / "c.toml"
    config.write_text('[kafka]\nbootstrap_servers = "file:9092"\ntopic = "file-topic"\n')
    settings = load_settings(
        config,
        environ={
            "KAFKA_BOOTSTRAP_SERVERS": "env:9093",
            "RECORDING_CONSUMER__ENGINE__COMMIT_EVERY": "7",
            "RECORDING_CONSUMER__ROUTES__COMPLETE": '["log", "other"]',
            "RECORDING_CONSUMER__HANDLERS__LOG__LEVEL": "debug",
            "UNRELATED": "ignored",
        },
    )
    assert settings.kafka.bootstrap_servers == "env:9093"
    assert settings.kafka.topic == "file-topic"
    assert settings.engine.commit_every == 7
    assert settings.routes["complete"] == ["log", "other"]
    assert settings.handlers["log"] == {"level": "debug"}


def test_environment_typo_is_an_error_naming_the_variable() -> None:
    """An override for a key that does not exist fails instead of being ignored."""
    with pytest.raises(ConfigError, match="RECORDING_CONSUMER__KAFKA__TOPCI") as info:
        load_settings(environ={"RECORDING_CONSUMER__KAFKA__TOPCI": "x"})
    assert info.value.key == "kafka.topci"


def test_check_config_prints_effective_settings() -> None:
    """check-config prints the merged settings as JSON and exits 0."""
    env = {"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "somewhere:9092"}
    result = check_config(env=env)
    assert result.returncode == 0, result.stderr
    assert '"bootstrap_servers": "somewhere:9092"' in result.stdout


def test_demo_config_loads_and_its_handlers_build() -> None:
    """config/demo.toml is valid and every handler its routes name can be built."""
    settings = load_settings(REPO / "config" / "demo.toml", environ={})
    names = {name for route in settings.routes.values() for name in route}
    handlers = build_handlers(names, settings.handlers, settings.plugins)
    assert sorted(handlers) == ["log", "publish"]
    assert settings.routes["complete"] == ["log", "publish"]


def test_check_config_says_which_settings_file_it_read(tmp_path: Path) -> None:
    """The working directory's default file is read only without --config, and named as such."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "consumer.toml").write_text('[kafka]\ntopic = "from-cwd"\n')
    given = tmp_path / "given.toml"
    given.write_text('[kafka]\ntopic = "from-option"\n')
    env = {"PATH": "/usr/bin:/bin"}

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "consumer", "check-config", *args]
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=cwd, env=env, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return done

    default = run(cwd=tmp_path)
    assert '"topic": "from-cwd"' in default.stdout
    assert default.stderr == (
        f"settings file: {tmp_path / 'config' / 'consumer.toml'} (no --config given, so the "
        "working directory's config/consumer.toml was read: it is trusted like code; pass "
        "--config to choose)\n"
    )
    chosen = run("--config", str(given), cwd=tmp_path)
    assert '"topic": "from-option"' in chosen.stdout
    assert chosen.stderr == f"settings file: {given} (--config)\n"
    (tmp_path / "empty").mkdir()
    none = run(cwd=tmp_path / "empty")
    assert '"topic": "bandwidth.recordings"' in none.stdout
    assert none.stderr.startswith("settings file: none (no --config, and no config/consumer.toml")


def test_check_config_names_statuses_a_routes_table_leaves_unrouted(tmp_path: Path) -> None:
    """A [routes] table replaces the built-in routes; check-config names the statuses left out."""
    only_complete = tmp_path / "complete.toml"
    only_complete.write_text('[routes]\ncomplete = ["log"]\n')
    result = check_config("--config", str(only_complete), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert '"routes": {\n    "complete": [\n      "log"\n    ]\n  }' in result.stdout
    assert (
        "routes: no route for processing, partial, deleted, error and no `default`"
    ) in result.stderr
    with_default = tmp_path / "default.toml"
    with_default.write_text('[routes]\ncomplete = ["log"]\ndefault = ["log"]\n')
    result = check_config("--config", str(with_default), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "routes:" not in result.stderr


def test_rebalance_wait_must_fit_the_rebalance_timeout() -> None:
    """A grace plus 10 s beyond kafka.max_poll_interval_ms is refused naming both keys; raising
    the interval makes the same grace acceptable."""
    grace = {"RECORDING_CONSUMER__ENGINE__SHUTDOWN_GRACE": "291"}
    with pytest.raises(ConfigError) as info:
        load_settings(environ=grace)
    assert info.value.key == "engine.shutdown_grace"
    assert "kafka.max_poll_interval_ms (300000 ms)" in str(info.value)
    assert "up to 301 s" in str(info.value)
    assert load_settings(environ={"RECORDING_CONSUMER__ENGINE__SHUTDOWN_GRACE": "290"})
    longer = grace | {"RECORDING_CONSUMER__KAFKA__MAX_POLL_INTERVAL_MS": "301000"}
    assert load_settings(environ=longer).engine.shutdown_grace == 291


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("KAFKA__TOPIC", '""', "kafka.topic: must not be empty"),
        ("ENGINE__MAX_IN_FLIGHT", "0", "engine.max_in_flight: must be greater than 0, got 0"),
        ("ENGINE__COMMIT_INTERVAL", "-1", "engine.commit_interval: must be greater than 0"),
        ("RETRY__TIMEOUT", "-1", "retry.timeout: must be greater than 0, got -1"),
        ("KAFKA__SESSION_TIMEOUT_MS", "5999", "kafka.session_timeout_ms: must be between 6000"),
    ],
)
def test_values_that_cannot_work_say_which_key_and_why(
    variable: str, value: str, reason: str
) -> None:
    """The error names the key, the rule, and the variable that set it."""
    with pytest.raises(ConfigError) as info:
        load_settings(environ={f"RECORDING_CONSUMER__{variable}": value})
    assert str(info.value).startswith(reason)
    assert f"(set by environment variable RECORDING_CONSUMER__{variable})" in str(info.value)


def test_the_key_s_own_variable_wins_over_kafka_bootstrap_servers() -> None:
    """With both set, in either order, RECORDING_CONSUMER__KAFKA__BOOTSTRAP_SERVERS is the one
    read: the more specific name decides, not the order the environment lists them in."""
    both = [
        ("KAFKA_BOOTSTRAP_SERVERS", "alias:9092"),
        ("RECORDING_CONSUMER__KAFKA__BOOTSTRAP_SERVERS", "own:9093"),
    ]
    for environ in (dict(both), dict(reversed(both))):
        assert load_settings(None, environ=environ).kafka.bootstrap_servers == "own:9093"


@pytest.mark.parametrize("servers", ["kafka:notaport", ":9092", " , ", "kafka:99999"])
def test_a_bootstrap_entry_that_is_not_host_port_is_refused_naming_the_key(servers: str) -> None:
    """A bootstrap address no client could connect to stops start-up naming the key, instead of
    the worker retrying it until its start-up timeout or the ingress crashing."""
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={"KAFKA_BOOTSTRAP_SERVERS": servers})
    assert info.value.key == "kafka.bootstrap_servers"


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("OBSERVABILITY__STALL_TIMEOUT", "nan", "observability.stall_timeout"),
        ("OBSERVABILITY__LOOP_BLOCK_TIMEOUT", "0", "observability.loop_block_timeout"),
        ("OBSERVABILITY__STATS_INTERVAL", "-1", "observability.stats_interval"),
        ("OBSERVABILITY__STATS_INTERVAL", "inf", "observability.stats_interval"),
        ("ENGINE__SHUTDOWN_GRACE", "nan", "engine.shutdown_grace"),
        ("RETRY__MAX_DELAY", "inf", "retry.max_delay"),
        ("INGRESS__PATH", '"/callbacks?x=1"', "ingress.path"),
        ("INGRESS__SPOOL_MAX_BYTES", "0", "ingress.spool_max_bytes"),
    ],
)
def test_a_value_no_timer_or_path_could_use_is_refused_naming_the_key(
    variable: str, value: str, key: str
) -> None:
    """NaN, infinity, zero or negative where a timer needs a finite positive number, and a
    callback path with a query part, stop start-up naming the key, for every command."""
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={f"RECORDING_CONSUMER__{variable}": value})
    assert info.value.key == key


def test_stats_off_and_every_default_are_accepted() -> None:
    """0 turns the stats line off; it and the defaults pass the same checks."""
    environ = {"RECORDING_CONSUMER__OBSERVABILITY__STATS_INTERVAL": "0"}
    assert load_settings(None, environ=environ).observability.stats_interval == 0
