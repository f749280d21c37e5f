"""wrk as bench/ingress.py runs it, and the process helpers around it: free ports, waiting for a
server to listen, a process's CPU seconds, and `measure`, which runs servers under wrk."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

CONNECTIONS = 50
PATH = "/callbacks"
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
WARM_UP = 2.0
"""Seconds of wrk before the measured run: connections, imports, the producer's metadata."""

Command = Callable[[str, int], list[str]]
"""(server name, port) to the command that serves it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pinned(command: list[str], cpus: set[int] | None) -> list[str]:
    """`command` run on `cpus` only (all of them when None), pinned before it starts a thread."""
    if cpus is None:
        return command
    return ["taskset", "-c", ",".join(map(str, sorted(cpus))), *command]


class Wrk:
    """One wrk run under way: one thread, `CONNECTIONS` keep-alive connections, `script`."""

    def __init__(self, port: int, seconds: float, script: Path, cpus: set[int] | None = None):
        command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:.0f}s", "--latency"]
        command += ["-s", str(script), f"http://127.0.0.1:{port}{PATH}"]
        self._started = time.monotonic()
        self._process = subprocess.Popen(pinned(command, cpus), stdout=subprocess.PIPE, text=True)

    def result(self) -> dict[str, float]:
        """Requests/s, p50 and p99 (seconds), wrk's own CPU per second, non-2xx answers."""
        _, status, usage = os.wait4(self._process.pid, 0)
        wall = time.monotonic() - self._started
        assert self._process.stdout is not None
        text = self._process.stdout.read()
        self._process.returncode = os.waitstatus_to_exitcode(status)
        rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        if rate is None:
            raise RuntimeError(f"wrk failed:\n{text}")
        return {
            "rate": float(rate[1]),
            "p50": _latency(text, "50"),
            "p99": _latency(text, "99"),
            "wrk_cpu": (usage.ru_utime + usage.ru_stime) / wall,
            "bad": float(non2xx[1]) if non2xx else 0.0,
        }


def measure(
    names: tuple[str, ...],
    seconds: float,
    script: Path,
    command: Command,
    *,
    servers_on: set[int] | None = None,
    wrk_on: set[int] | None = None,
) -> dict[str, dict[str, float]]:
    """Each server of `names` in a process of its own, then a warm-up and a measured run of
    `seconds`, one wrk per server, all at once; per server, wrk's figures and ``server_cpu``
    (its CPU seconds per second of the measured run)."""
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for name in names:
            port = free_port()
            servers[name] = (subprocess.Popen(pinned(command(name, port), servers_on)), port)
        for process, port in servers.values():
            wait_for_port(port, process)
        measured: dict[str, dict[str, float]] = {}
        for length in (WARM_UP, seconds):
            before = {name: cpu_seconds(p.pid) for name, (p, _) in servers.items()}
            started = time.monotonic()
            runs = {n: Wrk(port, length, script, wrk_on) for n, (_, port) in servers.items()}
            measured = {name: run.result() for name, run in runs.items()}
            wall = time.monotonic() - started
            for name, (p, _) in servers.items():
                measured[name]["server_cpu"] = (cpu_seconds(p.pid) - before[name]) / wall
        return measured
    finally:
        for process, _ in servers.values():
            process.terminate()
        for process, _ in servers.values():
            process.wait(timeout=30)


def _latency(text: str, percent: str) -> float:
    match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if match is None:
        raise RuntimeError(f"no {percent}% latency in wrk's output:\n{text}")
    return float(match[1]) * _UNITS[match[2]]
