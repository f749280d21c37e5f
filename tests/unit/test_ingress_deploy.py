"""The ingress's compose service, Kubernetes manifest and image settings agree with the code."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import yaml

from consumer.ingress.auth import credentials
from consumer.observability import serving
from consumer.settings.config import Settings, load_settings
from tests._support.deploy_files import (
    CONFIG_FILE,
    KUBERNETES,
    final_stage,
    image_env,
    port_of,
    seconds,
    service,
    unread_variables,
)


def k8s(kind: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((KUBERNETES / "ingress.yaml").read_text())
    (found,) = [doc for doc in docs if doc and doc["kind"] == kind]
    assert isinstance(found, dict)
    return found


def listen_port(settings: Settings) -> int:
    address = serving.listen_address(settings.ingress.listen, "ingress.listen")
    assert address is not None
    return address[1]


def test_compose_ingress_is_configured_as_the_code_reads_it() -> None:
    """Every variable of the compose `ingress` service is a setting; the settings pass the
    ingress's start-up checks with credentials; the published port is ingress.listen's, the
    spool volume is mounted at spool_dir, the health check asks observability.listen's /readyz,
    and compose waits longer than the ingress drains (twice shutdown_grace and 10 s of closing)."""
    ingress = service("ingress")
    env = {str(k): str(v) for k, v in ingress["environment"].items()}
    assert unread_variables(env) == []
    env["RECORDING_CONSUMER__INGRESS__PASSWORD"] = "change-me"  # compose's ${...:-default}
    settings = load_settings(path=CONFIG_FILE, environ=env)
    assert credentials(settings.ingress) is not None
    assert ingress["command"][0] == "ingest"
    port = listen_port(settings)
    assert any(mapping.endswith(f":{port}:{port}") for mapping in ingress["ports"])
    assert any(v.split(":")[1].split()[0] == settings.ingress.spool_dir for v in ingress["volumes"])
    probe = " ".join(ingress["healthcheck"]["test"])
    assert f"127.0.0.1:{port_of(settings.observability.listen)}/readyz" in probe
    assert seconds(ingress["stop_grace_period"]) >= 2 * settings.ingress.shutdown_grace + 10


def test_kubernetes_ingress_matches_the_settings() -> None:
    """The Deployment's variables are all settings and pass the start-up checks; its ports are
    ingress.listen's and observability.listen's, the Service targets the callback port, the
    spool is on the PersistentVolumeClaim at spool_dir, the password file comes from the Secret,
    and the grace period outlasts twice shutdown_grace and 10 s of closing."""
    deployment = k8s("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: str(e["value"]) for e in container["env"]}
    assert unread_variables(env) == []
    settings = load_settings(path=CONFIG_FILE, environ=env)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "callbacks": listen_port(settings),
        "http": port_of(settings.observability.listen),
    }
    assert k8s("Service")["spec"]["ports"][0]["targetPort"] == "callbacks"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["spool"] == settings.ingress.spool_dir
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes["spool"]["persistentVolumeClaim"]["claimName"]
    assert claim == k8s("PersistentVolumeClaim")["metadata"]["name"]
    assert settings.ingress.password_file is not None
    password = PurePosixPath(settings.ingress.password_file)
    assert str(password.parent) == mounts["credentials"]
    assert password.name in k8s("Secret")["stringData"]
    assert volumes["credentials"]["secret"]["secretName"] == k8s("Secret")["metadata"]["name"]
    assert pod["terminationGracePeriodSeconds"] >= 2 * settings.ingress.shutdown_grace + 10
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_the_image_serves_callbacks_on_8080_with_the_spool_on_a_volume() -> None:
    """The image sets ingress.listen to 0.0.0.0:8080 and exposes it; its spool_dir is a VOLUME."""
    settings = load_settings(path=CONFIG_FILE, environ=image_env())
    assert settings.ingress.listen == "0.0.0.0:8080"
    exposed = [port for op, args in final_stage() if op == "EXPOSE" for port in args.split()]
    assert "8080" in exposed
    volumes = " ".join(args for op, args in final_stage() if op == "VOLUME")
    assert f'"{settings.ingress.spool_dir}"' in volumes
