"""`Secret` options and secret files: masked in check-config, warned about when shared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from consumer import Secret
from consumer.errors import PluginError
from consumer.plugins.discovery import build_handlers
from consumer.secret import read_secret
from consumer.settings.config import PluginSettings, load_settings
from tests._support.kafka_helpers import REPO

TOKEN = "vault-token-do-not-leak"


def vault_module(directory: Path) -> str:
    """A handler module whose options mark `token` and `fallback` secret; returns its name."""
    name = f"vault_{uuid.uuid4().hex[:8]}"
    (directory / f"{name}.py").write_text(
        "import msgspec\n"
        "from consumer import Secret\n"
        "class VaultOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):\n"
        "    token: Secret\n"
        "    fallback: Secret | None = None\n"
        "    label: str = 'vault'\n"
        "class Vault:\n"
        "    Options = VaultOptions\n"
        "    def __init__(self, options):\n"
        "        self.options = options\n"
        "    async def handle(self, event, ctx):\n"
        "        pass\n"
    )
    return name


def test_check_config_masks_secret_options(tmp_path: Path) -> None:
    """Options typed `Secret` print as ***; the others as written; the value appears nowhere."""
    module = vault_module(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECORDING_CONSUMER__")}
    env |= {
        "PYTHONPATH": str(tmp_path),
        "RECORDING_CONSUMER__PLUGINS__PATHS__VAULT": f"{module}:Vault",
        "RECORDING_CONSUMER__HANDLERS__VAULT__TOKEN": TOKEN,
        "RECORDING_CONSUMER__HANDLERS__VAULT__LABEL": "shown",
    }

    def check_config() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "consumer",
                "check-config",
                "--config",
                "tests/_support/minimal.toml",
            ],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    result = check_config()
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr
    handlers = json.loads(result.stdout)["handlers"]
    assert handlers["vault"] == {"token": "***", "label": "shown"}

    env["RECORDING_CONSUMER__HANDLERS__GHOST__KEY"] = TOKEN
    ghost = check_config()
    assert ghost.returncode == 2, "options for no handler stop check-config, as they stop run"
    assert "handlers.ghost" in ghost.stderr
    assert TOKEN not in ghost.stdout + ghost.stderr


def test_secret_options_reach_the_handler_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler gets a Secret whose repr hides it; a non-string value names the key."""
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = PluginSettings(paths={"vault": f"{vault_module(tmp_path)}:Vault"})
    (handler,) = build_handlers(["vault"], {"vault": {"token": TOKEN}}, settings).values()
    options = handler.options  # type: ignore[attr-defined]
    assert options.token.reveal() == TOKEN
    assert options.token == Secret(TOKEN)
    assert TOKEN not in repr(options) + str(options.token)
    with pytest.raises(PluginError, match=r"^handlers\.vault\.token: Expected `str`, got `int`"):
        build_handlers(["vault"], {"vault": {"token": 5}}, settings)


@pytest.mark.parametrize(("mode", "warned"), [(0o640, True), (0o604, True), (0o600, False)])
def test_secret_file_readable_by_others_is_warned_about(
    tmp_path: Path, mode: int, warned: bool
) -> None:
    """A group- or world-readable secret file is used, with a warning naming file and mode."""
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(TOKEN + "\n")
    secret_file.chmod(mode)
    with capture_logs() as logs:
        secret = read_secret("UNUSED", str(secret_file), key="handlers.download.client_secret_env")
    assert secret.reveal() == TOKEN
    warnings = [e for e in logs if e["log_level"] == "warning"]
    if warned:
        (warning,) = warnings
        assert warning["event"] == "secret file is readable by group or others"
        assert (warning["file"], warning["mode"]) == (str(secret_file), oct(mode))
        assert warning["key"] == "handlers.download.client_secret_env"
    else:
        assert warnings == []
    assert TOKEN not in repr(logs)


@pytest.mark.parametrize("given", ["12345", '"quoted"', "0x10", "[1, 2]", " padded "])
def test_secret_options_from_the_environment_are_taken_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """A `Secret` handler option set by an environment variable is exactly the text given, as
    the Kafka SASL password is: not refused as a number, no quotes lost; the handler's other
    options from the environment are still read as TOML values."""
    monkeypatch.syspath_prepend(str(tmp_path))
    module = vault_module(tmp_path)
    settings = load_settings(
        environ={
            "RECORDING_CONSUMER__PLUGINS__PATHS__VAULT": f"{module}:Vault",
            "RECORDING_CONSUMER__HANDLERS__VAULT__TOKEN": given,
            "RECORDING_CONSUMER__HANDLERS__VAULT__FALLBACK": given,
            "RECORDING_CONSUMER__HANDLERS__VAULT__LABEL": '"label"',
            "RECORDING_CONSUMER__KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "RECORDING_CONSUMER__KAFKA__SASL_MECHANISM": "PLAIN",
            "RECORDING_CONSUMER__KAFKA__SASL_USERNAME": "user",
            "RECORDING_CONSUMER__KAFKA__SASL_PASSWORD": given,
        }
    )
    (handler,) = build_handlers(["vault"], settings.handlers, settings.plugins).values()
    options = handler.options  # type: ignore[attr-defined]
    assert options.token.reveal() == given
    assert options.fallback.reveal() == given
    assert options.label == "label"
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.reveal() == given


def test_non_secret_options_from_the_environment_keep_their_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only `Secret` options are verbatim: a number, a list and a nested table set from the
    environment still arrive typed, and a wrong type still names the key."""
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"typed_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "import msgspec\n"
        "from consumer import Secret\n"
        "class Inner(msgspec.Struct, forbid_unknown_fields=True):\n"
        "    key: Secret\n"
        "    size: int = 0\n"
        "class Options(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):\n"
        "    count: int = 0\n"
        "    hosts: list[str] = []\n"
        "    inner: Inner | None = None\n"
        "class Typed:\n"
        "    Options = Options\n"
        "    def __init__(self, options):\n"
        "        self.options = options\n"
        "    async def handle(self, event, ctx):\n"
        "        pass\n"
    )
    environ = {
        "RECORDING_CONSUMER__PLUGINS__PATHS__TYPED": f"{name}:Typed",
        "RECORDING_CONSUMER__HANDLERS__TYPED__COUNT": "7",
        "RECORDING_CONSUMER__HANDLERS__TYPED__HOSTS": '["a", "b"]',
        "RECORDING_CONSUMER__HANDLERS__TYPED__INNER__KEY": "007",
        "RECORDING_CONSUMER__HANDLERS__TYPED__INNER__SIZE": "3",
    }
    settings = load_settings(environ=environ)
    (handler,) = build_handlers(["typed"], settings.handlers, settings.plugins).values()
    options = handler.options  # type: ignore[attr-defined]
    assert (options.count, options.hosts, options.inner.size) == (7, ["a", "b"], 3)
    assert options.inner.key.reveal() == "007"
    settings = load_settings(environ=environ | {"RECORDING_CONSUMER__HANDLERS__TYPED__COUNT": "x"})
    with pytest.raises(PluginError, match=r"^handlers\.typed\.count: Expected `int`, got `str`"):
        build_handlers(["typed"], settings.handlers, settings.plugins)
