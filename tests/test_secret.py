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
from consumer.config import PluginSettings
from consumer.engine.plugins import build_handlers
from consumer.errors import PluginError
from consumer.secret import read_secret
from tests.support import REPO

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
            [sys.executable, "-m", "consumer", "check-config", "--config", "tests/minimal.toml"],
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
