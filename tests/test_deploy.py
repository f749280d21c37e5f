"""deploy/kubernetes, docker-compose.yml and the Dockerfile agree with the settings: the
endpoint's port and paths, grace periods, and every variable name the worker is given."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from consumer.config import Settings, load_settings
from consumer.errors import ConfigError
from consumer.handlers.download import DownloadOptions
from consumer.observability.server import listen_address
from tests.support import REPO
from tests.test_compose import (
    CONFIG_FILE,
    env_keys,
    final_stage,
    seconds,
    service,
    setting_at,
    toml_value,
    unread_variables,
    worker_env,
)

KUBERNETES = REPO / "deploy" / "kubernetes"


def manifests(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((KUBERNETES / name).read_text()) if doc]


def deployment() -> dict[str, Any]:
    (found,) = [d for d in manifests("deployment.yaml") if d["kind"] == "Deployment"]
    return found


def container() -> dict[str, Any]:
    (worker,) = deployment()["spec"]["template"]["spec"]["containers"]
    assert isinstance(worker, dict)
    return worker


def plain_env() -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in container()["env"]}


def secret_names() -> set[str]:
    (secret,) = manifests("secret.yaml")
    return set(secret["stringData"])


def k8s_settings() -> Settings:
    return load_settings(path=CONFIG_FILE, environ=plain_env())


def image_env() -> dict[str, str]:
    """The final stage's ENV variables, as ``NAME=value`` pairs."""
    pairs = (p for op, args in final_stage() if op == "ENV" for p in args.split())
    return dict(pair.split("=", 1) for pair in pairs)


def port_of(listen: str) -> int:
    address = listen_address(listen)
    assert address is not None, "the endpoint is off"
    return address[1]


def test_kubernetes_variables_are_all_read() -> None:
    """Every plain variable is a settings key with that value; the Secret's are the names the
    download handler reads; the Deployment loads that Secret."""
    env = plain_env()
    assert unread_variables(env) == []
    settings = k8s_settings()
    for name, value in env.items():
        assert setting_at(settings, env_keys(name)) == toml_value(value), name
    options = DownloadOptions()
    assert secret_names() == {options.client_id_env, options.client_secret_env}
    assert "download" in settings.routes["complete"]
    (source,) = container()["envFrom"]
    (secret,) = manifests("secret.yaml")
    assert source["secretRef"]["name"] == secret["metadata"]["name"]


def test_probes_and_ports_match_the_endpoint() -> None:
    """Liveness probes /healthz and readiness /readyz on the port observability.listen
    names, which the Dockerfile exposes, the scrape annotation names and compose checks."""
    port = port_of(k8s_settings().observability.listen)
    image = load_settings(path=CONFIG_FILE, environ=image_env())
    assert port_of(image.observability.listen) == port
    assert Settings().observability.listen == "", "off unless asked, outside the image"
    worker = container()
    (declared,) = worker["ports"]
    assert declared["containerPort"] == port
    probes = {kind: worker[kind]["httpGet"] for kind in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert all(probe["port"] in (port, declared["name"]) for probe in probes.values())
    annotations = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    exposed = [args.split()[0] for op, args in final_stage() if op == "EXPOSE"]
    assert exposed == [str(port)]
    compose_port = port_of(
        load_settings(path=CONFIG_FILE, environ=worker_env()).observability.listen
    )
    assert compose_port == port
    check = " ".join(service("worker")["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in check


def test_grace_periods_outlast_shutdown_grace() -> None:
    """Kubernetes waits longer than the worker drains before SIGKILL; probes do not give up on
    a worker before its start-up retries for Kafka have had their time."""
    spec = deployment()["spec"]["template"]["spec"]
    settings = k8s_settings()
    assert spec["terminationGracePeriodSeconds"] > settings.engine.shutdown_grace
    assert seconds(service("worker")["stop_grace_period"]) > settings.engine.shutdown_grace
    security = spec["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] != 0
    assert container()["resources"]["requests"]


def test_endpoint_address_is_validated() -> None:
    """observability.listen takes host:port or "" (off), and names itself when malformed."""
    assert listen_address("") is None
    assert listen_address("0.0.0.0:9464") == ("0.0.0.0", 9464)
    assert listen_address("[::1]:9464") == ("::1", 9464)
    for bad in ("9464", "host:", "host:http", "host:70000"):
        with pytest.raises(ConfigError, match=r"^observability\.listen: ") as caught:
            listen_address(bad)
        assert caught.value.key == "observability.listen"
