"""The secured local broker keeps its secrets from other local users: a 0700 state directory,
files 0600 from creation, and no password on any process's command line."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from consumer.devkit.broker import LocalBroker
from consumer.devkit.broker.private import private_dir, write_private
from tests._support.kafka_helpers import REPO

# Starts a secured broker in argv[1] and prints every command line the launcher spawned
# (the audit hook sees each argv before exec), in a process of its own so the hook dies with it.
START_RECORDING_ARGV = """
import json, sys
from pathlib import Path
from consumer.devkit.broker import LocalBroker, free_port
spawned = []
def hook(event, args):
    if event == "subprocess.Popen":
        spawned.append([a.decode() if isinstance(a, bytes) else str(a) for a in args[1]])
sys.addaudithook(hook)
LocalBroker(Path(sys.argv[1]), port=free_port(), secured=True).start()
print(json.dumps(spawned))
"""

# Writes the TLS files into argv[1] under the usual umask 022, and at every open and chmod the
# writer makes (each step of creating a file) lists files group or others could read then.
WRITE_WATCHING_MODES = """
import json, os, stat, sys
from pathlib import Path
from consumer.devkit.broker.security import write_tls_files
tls = Path(sys.argv[1])
exposed, steps = set(), []
def hook(event, args):
    if event in ("open", "os.chmod") and str(args[0]).startswith(str(tls)):
        steps.append(event)
        for entry in tls.iterdir() if tls.is_dir() else ():
            if entry.lstat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                exposed.add(entry.name)
sys.addaudithook(hook)
os.umask(0o022)
write_tls_files(tls)
print(json.dumps({"exposed": sorted(exposed), "steps": len(steps)}))
"""


def shared_entries(root: Path) -> list[str]:
    """Paths under `root` (itself included) whose mode grants anything to group or others."""
    found = [root, *root.rglob("*")]
    return [
        f"{p.relative_to(root)} {stat.filemode(p.lstat().st_mode)}"
        for p in found
        if p.lstat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    ]


def command_lines_holding(secrets: list[bytes]) -> list[str]:
    """Every running process whose /proc/<pid>/cmdline contains one of `secrets`."""
    holding = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # exited meanwhile, or not ours to read
            continue
        if any(secret in cmdline for secret in secrets):
            shown = cmdline.replace(b"\0", b" ")[:200]
            holding.append(f"{entry.name}: {shown!r}")
    return holding


def test_secured_broker_keeps_passwords_off_command_lines_and_its_files_private(
    tmp_path: Path,
) -> None:
    """While a secured broker starts and once it serves, no process's command line holds the
    SCRAM or PLAIN password (the StorageTool reads them from a private @file), and its state
    directory, certificates, keys, config, log and Kafka's data are readable by no one else."""
    state = tmp_path / "secured"
    tls = state / "tls"
    starter = subprocess.Popen(
        [sys.executable, "-c", START_RECORDING_ARGV, str(state)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    passwords: list[bytes] = []
    try:
        deadline = time.monotonic() + 180
        while starter.poll() is None:
            assert time.monotonic() < deadline, "the secured broker did not start in 180 s"
            if len(passwords) < 2:
                passwords = [p.read_bytes() for p in tls.glob("*.password") if p.stat().st_size]
            seen += command_lines_holding(passwords)
            with contextlib.suppress(subprocess.TimeoutExpired):  # look again after 20 ms
                starter.wait(timeout=0.02)
        out, err = starter.communicate()
        assert starter.returncode == 0, err
        passwords = [p.read_bytes() for p in tls.glob("*.password")]
        assert len(passwords) == 2
        assert seen == [], "a password was on a command line while the broker started"
        assert command_lines_holding(passwords) == [], "a password is on a running command line"
        spawned = json.loads(out)
        assert any(argv[-1].startswith("@") for argv in spawned), "no StorageTool @file run"
        assert not [a for a in spawned if any(p.decode() in " ".join(a) for p in passwords)]
        assert shared_entries(state) == []
        assert (state / "server.properties").exists()
        assert any((state / "data").rglob("*.checkpoint")), "Kafka's own files were not checked"
        assert not (state / "storage-tool.args").exists(), "the @file outlived the StorageTool"
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.communicate()
        LocalBroker(state).stop()


def test_key_files_are_never_readable_by_others_while_written(tmp_path: Path) -> None:
    """Under umask 022, at every step of writing the certificates, keys and passwords (each
    open and chmod), no file in the directory is readable by group or others: they are created
    0600, not written first and narrowed after."""
    tls = tmp_path / "tls"
    done = subprocess.run(
        [sys.executable, "-c", WRITE_WATCHING_MODES, str(tls)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    names = {p.name for p in tls.iterdir()}
    assert {"client.key", "server-keystore.pem", "scram-user.password"} <= names
    assert report["steps"] >= len(names), "the writes were not observed"
    assert report["exposed"] == []
    assert shared_entries(tls) == []


def test_state_left_readable_by_an_older_version_is_narrowed(tmp_path: Path) -> None:
    """A state directory left 0755 becomes 0700, and a file left 0644 is replaced by a new 0600
    one holding only the new content (reopening it would have kept 0644)."""
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    old = state / "server.properties"
    old.write_text("user_plain-user=old\n")
    old.chmod(0o644)
    private_dir(state)
    write_private(old, "user_plain-user=new\n")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    assert old.read_text() == "user_plain-user=new\n"
    assert os.listdir(state) == ["server.properties"]
