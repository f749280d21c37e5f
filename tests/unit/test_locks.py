"""`make install` (and so CI) installs what the image ships: the runtime from requirements.lock,
the dev tools from requirements-dev.lock, which agrees with it; a dependency added to
pyproject.toml without `make lock` fails here."""

from __future__ import annotations

import re
import subprocess
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests._support.deploy_files import LOCK_FILE, locked
from tests._support.kafka_helpers import REPO

DEV_LOCK = REPO / "requirements-dev.lock"
EXAMPLE = REPO / "examples" / "recording-consumer-audit"
OWN_PACKAGES = {"recording-consumer", "recording-consumer-audit"}


def dry_run(target: str) -> str:
    """The commands `make <target>` would run from scratch, without running them."""
    done = subprocess.run(
        ["make", "--dry-run", "--always-make", target],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def locked_extras() -> list[str]:
    """The extras `make lock` resolves into requirements-dev.lock (its ``-e .[...]`` for uv)."""
    match = re.search(r"-e \.\[%s\].*?'([\w,-]+)'", dry_run("lock"), re.DOTALL)
    assert match, "make lock does not lock the project's extras"
    return match[1].split(",")


def unmet(requirements: list[str], versions: dict[str, str], extra: str = "") -> list[str]:
    """The requirements (their markers taken for this interpreter and `extra`) that `versions`
    lacks or pins outside the requirement's range."""
    missing = []
    for requirement in map(Requirement, requirements):
        name = canonicalize_name(requirement.name)
        if name in OWN_PACKAGES:
            continue
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        version = versions.get(name)
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            missing.append(f"{requirement} (locked: {version})")
    return missing


def test_dev_lock_satisfies_the_locked_extras_and_the_example_plugin() -> None:
    """Every requirement of the project, of each extra `make lock` locks (all but bench) and of
    the example plugin is pinned in requirements-dev.lock within its range."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = locked_extras()
    assert "dev" in extras
    assert "bench" not in extras, "the bench extra is installed by hand, not locked"
    dev = locked(DEV_LOCK)
    assert unmet(project["dependencies"], dev) == []
    for extra in extras:
        assert unmet(project["optional-dependencies"][extra], dev, extra) == [], extra
    plugin = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert unmet(plugin["dependencies"], dev) == []


def test_dev_lock_agrees_with_the_runtime_lock() -> None:
    """A package in both locks has one version: the dev tools never move a runtime package
    away from what the image ships."""
    runtime, dev = locked(LOCK_FILE), locked(DEV_LOCK)
    differing = {
        n: (runtime[n], dev[n]) for n in runtime.keys() & dev.keys() if runtime[n] != dev[n]
    }
    assert differing == {}
    assert {"msgspec", "httpx", "aiokafka"} <= runtime.keys() & dev.keys()


def test_install_takes_exact_versions_from_the_locks() -> None:
    """`make install` installs requirements.lock and requirements-dev.lock with hashes and no
    dependency resolution, the packages themselves without dependencies, then `pip check`;
    CI's script installs through it."""
    install = [line for line in dry_run("install").splitlines() if "pip " in line]
    runtime = [i for i, c in enumerate(install) if "-r requirements.lock" in c]
    dev = [i for i, c in enumerate(install) if "-r requirements-dev.lock" in c]
    assert runtime, install
    assert dev, install
    assert runtime[0] < dev[0], "the runtime lock first: it decides the shared versions"
    for i in runtime + dev:
        assert "--require-hashes" in install[i], install[i]
        assert "--no-deps" in install[i], install[i]
    editable = [c for c in install if " -e " in c]
    assert editable, install
    assert all("--no-deps" in c for c in editable)
    assert not [c for c in install if "pip install" in c and "-r " not in c and " -e " not in c]
    assert "pip check" in install[-1]
    ci = (REPO / ".ci" / "run").read_text()
    assert "make install" in ci
