"""The deploy files as the tests read them: compose services, the image's stages and
environment, the locks."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import yaml

from consumer.observability.server import listen_address
from consumer.settings.config import ENV_ALIASES, ENV_PREFIX, Settings
from tests._support.kafka_helpers import REPO

CONFIG_FILE = REPO / "config" / "consumer.toml"


LOCK_FILE = REPO / "requirements.lock"


PINNED = re.compile(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}")
"""``name:tag@sha256:<digest>``: pinned, with the tag kept for readers and updates."""


def service(name: str) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services[name]


def worker_env() -> dict[str, str]:
    env = service("worker")["environment"]
    assert isinstance(env, dict), "worker environment should be a mapping"
    return {str(k): str(v) for k, v in env.items()}


def unread_variables(env: dict[str, str]) -> list[str]:
    """Names load_settings would silently ignore: neither an alias nor under the prefix."""
    return [n for n in env if n not in ENV_ALIASES and not n.startswith(ENV_PREFIX)]


def setting_at(settings: Settings, keys: tuple[str, ...]) -> Any:
    node: Any = msgspec.to_builtins(settings, enc_hook=str)  # a Secret shows masked
    for key in keys:
        node = node[key]
    return node


def env_keys(name: str) -> tuple[str, ...]:
    if name in ENV_ALIASES:
        return ENV_ALIASES[name]
    return tuple(part.lower() for part in name.removeprefix(ENV_PREFIX).split("__"))


def toml_value(value: str) -> Any:
    """How the documented scheme reads a value: TOML when it parses, else the plain string."""
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def seconds(duration: str | int | float) -> float:
    """A compose duration (``45s``, ``1m30s``, ``1500ms``) in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts, f"not a compose duration: {duration!r}"
    assert "".join(n + u for n, u in parts) == duration, f"not a compose duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def locked(lock: Path = LOCK_FILE) -> dict[str, str]:
    """Package name to version in `lock`, every entry checked to carry hashes."""
    versions: dict[str, str] = {}
    for entry in re.split(r"\n(?=\S)", lock.read_text()):
        if entry.startswith("#") or not entry.strip():
            continue
        requirement = entry.split()[0]
        assert "--hash=sha256:" in entry, f"{requirement} has no hash"
        name, _, version = requirement.partition("==")
        versions[name.lower()] = version
    return versions


KUBERNETES = REPO / "deploy" / "kubernetes"


def image_env() -> dict[str, str]:
    """The final stage's ENV variables, as ``NAME=value`` pairs."""
    pairs = (p for op, args in final_stage() if op == "ENV" for p in args.split())
    return dict(pair.split("=", 1) for pair in pairs)


def port_of(listen: str) -> int:
    address = listen_address(listen)
    assert address is not None, "the endpoint is off"
    return address[1]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return [(w[0].upper(), w[1] if len(w) > 1 else "") for w in (x.split(None, 1) for x in lines)]


COMPOSE_FILE = REPO / "docker-compose.yml"


DOCKERFILE = REPO / "Dockerfile"
