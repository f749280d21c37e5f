"""docker-compose.yml and the Dockerfile agree with the code: settings, topics, versions, users."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib

import pytest
from packaging.requirements import Requirement

from consumer.devkit.broker import KAFKA_VERSION
from consumer.errors import ConfigError
from consumer.handlers.download import DownloadOptions
from consumer.settings.config import (
    EngineSettings,
    load_settings,
)
from tests._support.deploy_files import (
    COMPOSE_FILE,
    CONFIG_FILE,
    PINNED,
    compose,
    dockerfile_instructions,
    env_keys,
    final_stage,
    locked,
    seconds,
    service,
    setting_at,
    toml_value,
    unread_variables,
    worker_env,
)
from tests._support.kafka_helpers import REPO


def created_topics() -> list[str]:
    """Topics the create-topics script creates, with its $$VARIABLES resolved from its env."""
    create = service("create-topics")
    script = " ".join(
        create["command"] if isinstance(create["command"], list) else [create["command"]]
    )
    env = {str(k): str(v) for k, v in (create.get("environment") or {}).items()}
    topics: list[str] = []
    for line in script.splitlines():
        if "kafka-topics.sh" not in line or "--create" not in line:
            continue
        assert "--if-not-exists" in line, f"topic creation is not idempotent: {line}"
        match = re.search(r'--topic[ =]"?(\$\$\{?(\w+)\}?|[\w.-]+)"?', line)
        assert match, f"no --topic in {line}"
        topics.append(env[match[2]] if match[2] else match[1])
    return topics


def test_worker_environment_is_all_read_by_the_worker() -> None:
    """Every worker variable is one load_settings reads, and the settings carry its value."""
    env = worker_env()
    assert unread_variables(env) == []
    settings = load_settings(path=CONFIG_FILE, environ=env)
    for name, value in env.items():
        assert setting_at(settings, env_keys(name)) == toml_value(value), name
    assert settings.kafka.bootstrap_servers == env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert settings.kafka.topic == env["RECORDING_CONSUMER__KAFKA__TOPIC"]
    assert settings.kafka.group_id == env["RECORDING_CONSUMER__KAFKA__GROUP_ID"]
    assert settings.logging.format == "json"


def test_misspelt_worker_variable_is_caught() -> None:
    """A misspelt key fails load_settings naming it; a misspelt prefix is flagged as unread."""
    env = worker_env() | {"RECORDING_CONSUMER__KAFKA__GROUPID": "oops"}
    with pytest.raises(ConfigError, match=r"kafka\.groupid") as caught:
        load_settings(path=CONFIG_FILE, environ=env)
    assert caught.value.key == "kafka.groupid"
    assert "RECORDING_CONSUMER__KAFKA__GROUPID" in str(caught.value)
    typo = worker_env() | {"RECORDING_CONSUMERS__KAFKA__TOPIC": "other"}
    assert unread_variables(typo) == ["RECORDING_CONSUMERS__KAFKA__TOPIC"]


def test_kafka_image_matches_devkafka_version() -> None:
    """The compose broker runs the same Kafka version as the local dev broker."""
    assert service("kafka")["image"].partition("@")[0] == f"apache/kafka:{KAFKA_VERSION}"
    assert service("create-topics")["image"] == service("kafka")["image"]


def test_created_topics_are_the_workers() -> None:
    """create-topics makes exactly the worker's topic and its <topic>.dlq dead-letter topic."""
    settings = load_settings(path=CONFIG_FILE, environ=worker_env())
    topic = settings.kafka.topic
    dead_letter = settings.dead_letter.topic or f"{topic}.dlq"
    assert dead_letter == f"{topic}.dlq"
    assert created_topics() == [topic, dead_letter]
    depends = service("worker")["depends_on"]
    assert depends["create-topics"]["condition"] == "service_completed_successfully"
    assert service("create-topics")["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_dockerfile_runs_recording_consumer_as_non_root() -> None:
    """The image's last USER is a non-root uid and its ENTRYPOINT is the project's script."""
    stage = final_stage()
    users = [args.strip() for op, args in stage if op == "USER"]
    assert users, "the final stage sets no USER, so it runs as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    entrypoints = [json.loads(args) for op, args in stage if op == "ENTRYPOINT"]
    assert entrypoints[-1] == ["recording-consumer"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "recording-consumer" in scripts


def test_stop_grace_period_outlasts_shutdown_grace() -> None:
    """Compose waits longer than the worker's drain time before it sends SIGKILL."""
    grace = seconds(service("worker")["stop_grace_period"])
    effective = load_settings(path=CONFIG_FILE, environ=worker_env()).engine.shutdown_grace
    assert grace > EngineSettings().shutdown_grace
    assert grace > effective


def test_compose_duration_parser() -> None:
    """The duration helper reads compose's forms and rejects garbage."""
    assert seconds("45s") == 45.0
    assert seconds("1m30s") == 90.0
    assert seconds("1500ms") == 1.5
    with pytest.raises(AssertionError):
        seconds("45 seconds")


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    found = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=60, check=False
    )
    return [docker, "compose"] if found.returncode == 0 else None


def test_docker_compose_config_validates() -> None:
    """`docker compose config -q` accepts the file (needs the compose plugin, not an engine)."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` CLI plugin here; the schema was not validated")
    done = subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_base_images_are_pinned_by_digest_keeping_the_tag() -> None:
    """Every image pulled, in the Dockerfile and the compose file, is name:tag@sha256:digest."""
    args = dict(
        arg.split("=", 1) for op, arg in dockerfile_instructions() if op == "ARG" and "=" in arg
    )
    froms = [arg.split()[0] for op, arg in dockerfile_instructions() if op == "FROM"]
    bases = [args.get(image.strip("${}"), image) for image in froms]
    assert bases, "no FROM"
    pulled = [s["image"] for s in compose()["services"].values() if "build" not in s]
    for image in bases + pulled:
        assert PINNED.fullmatch(image), f"not pinned by digest: {image}"


def test_image_installs_the_hashed_lock_that_satisfies_pyproject() -> None:
    """The image installs requirements.lock with --require-hashes; it pins every dependency."""
    runs = [args for op, args in dockerfile_instructions() if op == "RUN"]
    assert any("--require-hashes" in r and "-r requirements.lock" in r for r in runs)
    assert any("--no-build-isolation ." in r for r in runs), "the build fetches unlocked tools"
    versions = locked()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = project["project"]["dependencies"] + project["build-system"]["requires"]
    for spec in map(Requirement, wanted):
        name = spec.name.lower()
        assert name in versions, f"{name} is not in requirements.lock: run `make lock`"
        assert spec.specifier.contains(versions[name]), f"{name}=={versions[name]} vs {spec}"


def test_recordings_volume_is_the_download_default_and_the_users() -> None:
    """The download handler's default destination is a volume the image's user owns; compose
    mounts a named volume there."""
    stage = final_stage()
    workdir = [args for op, args in stage if op == "WORKDIR"][-1].strip()
    directory = f"{workdir}/{DownloadOptions().destination}"
    volumes = [v for op, args in stage if op == "VOLUME" for v in json.loads(args)]
    assert directory in volumes
    user = [args for op, args in stage if op == "USER"][-1].strip()
    uid = user.split(":")[0]
    made = [
        i
        for i, (op, args) in enumerate(stage)
        if op == "RUN" and directory in args and f"-o {uid}" in args
    ]
    volume = next(i for i, (op, args) in enumerate(stage) if op == "VOLUME")
    # Docker discards changes a later RUN makes inside a declared volume.
    assert made, f"{directory} is not created owned by {user}"
    assert made[0] < volume, f"{directory} is created after VOLUME"
    mounts = service("worker").get("volumes", [])
    named = [m.split(":")[0] for m in mounts if m.split(":")[1] == directory]
    assert named, f"the worker mounts nothing at {directory}"
    assert named[0] in (compose().get("volumes") or {}), "not a named volume"
