"""deploy/kubernetes, docker-compose.yml and the Dockerfile agree with the settings: the
endpoint's port and paths, grace periods, every variable name the worker is given, secrets as
files, and who may reach the observability port."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from consumer.errors import ConfigError
from consumer.handlers.download import DownloadOptions
from consumer.kafka.security import checked
from consumer.observability.server import listen_address
from consumer.secret import read_secret
from consumer.settings.config import Settings, load_settings
from tests._support.deploy_files import (
    CONFIG_FILE,
    KUBERNETES,
    PINNED,
    env_keys,
    final_stage,
    image_env,
    port_of,
    seconds,
    service,
    setting_at,
    toml_value,
    unread_variables,
    worker_env,
)


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


def secrets() -> dict[str, dict[str, str]]:
    """Each Secret's name to its keys and values."""
    return {s["metadata"]["name"]: s["stringData"] for s in manifests("secret.yaml")}


def secret_mounts() -> dict[str, str]:
    """Mount path to the name of the Secret mounted there."""
    volumes = deployment()["spec"]["template"]["spec"]["volumes"]
    by_volume = {v["name"]: v["secret"]["secretName"] for v in volumes if "secret" in v}
    mounts = container()["volumeMounts"]
    return {m["mountPath"]: by_volume[m["name"]] for m in mounts if m["name"] in by_volume}


def secret_variables() -> set[str]:
    """Variable names that would carry a secret value itself: the download handler's
    credentials, the SASL password, and AWS's secret key and session token."""
    options = DownloadOptions()
    named = {getattr(options, f) for f in DownloadOptions.__struct_fields__ if f.endswith("_env")}
    kafka = "RECORDING_CONSUMER__KAFKA__SASL_PASSWORD"
    return named | {kafka, "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


@pytest.fixture
def mounted_env(tmp_path: Path) -> dict[str, str]:
    """The plain environment, its secret files laid out under tmp_path as the kubelet would."""
    return mounted_like_the_kubelet(tmp_path)


def k8s_settings(environ: dict[str, str]) -> Settings:
    return checked(load_settings(path=CONFIG_FILE, environ=environ), environ)


def mounted_like_the_kubelet(root: Path) -> dict[str, str]:
    """The Secrets written under `root` as their volumes would show them (one file per key,
    with the volume's mode), and the plain environment with every path moved under `root`."""
    volumes = deployment()["spec"]["template"]["spec"]["volumes"]
    modes = {
        v["secret"]["secretName"]: v["secret"]["defaultMode"] for v in volumes if "secret" in v
    }
    for mount, name in secret_mounts().items():
        directory = root / mount.lstrip("/")
        directory.mkdir(parents=True)
        for key, value in secrets()[name].items():
            (directory / key).write_text(value)
            (directory / key).chmod(modes[name])
    return {
        name: str(root / value.lstrip("/"))
        if any(value.startswith(m) for m in secret_mounts())
        else value
        for name, value in plain_env().items()
    }


def test_kubernetes_variables_are_all_read(mounted_env: dict[str, str]) -> None:
    """Every plain variable is a settings key with that value, and the download handler is
    routed."""
    assert unread_variables(plain_env()) == []
    settings = k8s_settings(mounted_env)
    for name, value in mounted_env.items():
        assert setting_at(settings, env_keys(name)) == toml_value(value), name
    assert "download" in settings.routes["complete"]


def test_kubernetes_secrets_are_files_the_worker_reads(mounted_env: dict[str, str]) -> None:
    """Every Secret is mounted read-only as files with defaultMode 0400 and none reaches the
    environment; with the Secrets laid out as the kubelet would, the settings read the SASL
    password and the download handler its credentials from those files."""
    worker = container()
    assert "envFrom" not in worker
    assert [e["name"] for e in worker["env"] if "valueFrom" in e] == []
    assert secret_variables().isdisjoint(plain_env())
    assert sorted(secret_mounts().values()) == sorted(secrets())
    volumes = deployment()["spec"]["template"]["spec"]["volumes"]
    for volume in (v for v in volumes if "secret" in v):
        assert volume["secret"]["defaultMode"] == 0o400, volume["name"]
    assert all(m["readOnly"] for m in worker["volumeMounts"] if m["mountPath"] in secret_mounts())
    settings = k8s_settings(mounted_env)
    password = settings.kafka.sasl_password  # checked read kafka.sasl_password_file
    assert password is not None
    assert password.reveal() == secrets()["recording-consumer-kafka"]["password"]
    options = msgspec.convert(settings.handlers["download"], DownloadOptions)
    assert options.client_id_file
    assert options.client_secret_file
    key = "handlers.download.client_id_env"
    bandwidth = secrets()["recording-consumer-bandwidth"]
    assert read_secret("UNSET", options.client_id_file, key=key).reveal() == bandwidth["client-id"]
    secret = read_secret("UNSET", options.client_secret_file, key=key).reveal()
    assert secret == bandwidth["client-secret"]
    assert stat.S_IMODE(Path(options.client_secret_file).stat().st_mode) == 0o400


def test_compose_worker_gets_no_secret_through_the_environment() -> None:
    """The compose worker's environment carries no credential (it has none to pass today; one
    added later belongs in a compose secret and a *_file setting)."""
    assert secret_variables().isdisjoint(worker_env())


def test_kubernetes_pod_has_no_token_and_a_pinned_image() -> None:
    """The pod mounts no service-account token, and its image is name:tag@sha256:digest."""
    spec = deployment()["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert PINNED.fullmatch(container()["image"]), container()["image"]


def test_network_policy_admits_only_the_scraper_to_the_endpoint(
    mounted_env: dict[str, str],
) -> None:
    """The NetworkPolicy selects the worker's pods, governs all their ingress, and admits only
    pods of the scraper's namespace and label (both required), on the endpoint's port only."""
    (policy,) = [d for d in manifests("networkpolicy.yaml") if d["kind"] == "NetworkPolicy"]
    spec = policy["spec"]
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert "Ingress" in spec["policyTypes"]
    (rule,) = spec["ingress"]
    (peer,) = rule["from"]  # one peer with both selectors: namespace AND pod must match
    assert peer["namespaceSelector"]["matchLabels"]
    assert peer["podSelector"]["matchLabels"]
    port = port_of(k8s_settings(mounted_env).observability.listen)
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    (kustomization,) = manifests("kustomization.yaml")
    assert "networkpolicy.yaml" in kustomization["resources"]


def test_probes_and_ports_match_the_endpoint(mounted_env: dict[str, str]) -> None:
    """Liveness probes /healthz and readiness /readyz on the port observability.listen
    names, which the Dockerfile exposes, the scrape annotation names and compose checks."""
    port = port_of(k8s_settings(mounted_env).observability.listen)
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


def test_grace_periods_outlast_shutdown_grace(mounted_env: dict[str, str]) -> None:
    """Kubernetes waits longer than the worker drains before SIGKILL; probes do not give up on
    a worker before its start-up retries for Kafka have had their time."""
    spec = deployment()["spec"]["template"]["spec"]
    settings = k8s_settings(mounted_env)
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
