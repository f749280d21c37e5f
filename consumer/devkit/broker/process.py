"""One local KRaft broker as a plain, detached JVM process (there is no Docker here): started on
fresh storage, killed and restarted for drills, stopped; its state directory kept private."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from consumer.devkit.broker import ports
from consumer.devkit.broker.home import BrokerError, say, tail
from consumer.devkit.broker.jars import KAFKA_VERSION, ensure_jars, java_binary
from consumer.devkit.broker.liveness import answers_metadata, exited, is_our_broker
from consumer.devkit.broker.ports import free_port, free_ports, port_is_free
from consumer.devkit.broker.private import UMASK, private_dir, write_private
from consumer.devkit.broker.properties import LOG4J2, render_server_properties
from consumer.devkit.broker.security import (
    Security,
    render_security_properties,
    scram_arguments,
    write_tls_files,
)
from consumer.devkit.broker.storage import storage_tool

STOP_TIMEOUT = 20.0

# Serial GC: a small dev heap gains nothing from G1's extra threads on 2 cores (start-up measured
# 1.4-1.8 s either way). C1-only (TieredStopAtLevel=1) gained nothing and would skew benchmarks.
JVM_FLAGS = ["-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:-UsePerfData"]

# sh arguments: the log file, then the command; prints the broker's pid.
_SPAWN = 'log=$1; shift; "$@" >"$log" 2>&1 </dev/null & echo $!'


class LocalBroker:
    """One KRaft broker process whose config, data, log and pid live in `state_dir`.

    `secured` adds SASL_SSL and mutual-TLS SSL listeners beside the PLAINTEXT one (`security`).
    `state_dir` is 0700 and every file in it 0600 from creation (`consumer.devkit.broker.private`).
    `extra_properties` are appended to server.properties (the last value of a key wins) and
    `jvm_flags` given to the JVM: how variants such as `oauth` configure the broker.
    """

    def __init__(
        self,
        state_dir: Path,
        port: int | None = None,
        *,
        secured: bool = False,
        extra_properties: str = "",
        jvm_flags: Sequence[str] = (),
    ) -> None:
        self.state_dir = state_dir.absolute()
        self.port = port
        self.secured = secured
        self.extra_properties = extra_properties
        self.jvm_flags = list(jvm_flags)
        self._requested_port = port
        self.pid_file = self.state_dir / "broker.pid"
        self.port_file = self.state_dir / "broker.port"
        self.data_dir = self.state_dir / "data"
        self.log_file = self.state_dir / "broker.log"
        self.config_file = self.state_dir / "server.properties"
        self.tls_dir = self.state_dir / "tls"
        self._listeners_file = self.tls_dir / "listeners"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def security(self) -> Security:
        """The secured listeners' addresses and client credentials (a secured broker only)."""
        try:
            sasl_ssl, ssl = self._listeners_file.read_text().split()
        except (OSError, ValueError):
            raise BrokerError(f"no secured broker was started in {self.state_dir}") from None
        return Security(sasl_ssl=sasl_ssl, ssl=ssl, tls_dir=self.tls_dir)

    def start(self, timeout: float = 90) -> str:
        """Format fresh storage, start the broker, return its bootstrap once it serves metadata."""
        self.port = self._choose_port()  # first: a taken port needs no jars to be refused
        jars = ensure_jars()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        private_dir(self.state_dir)
        write_private(self.state_dir / "log4j2.properties", LOG4J2)
        (controller_port,) = free_ports(1, taken=[self.port])
        properties = render_server_properties(self.port, controller_port, self.data_dir)
        format_extra: list[str] = []
        if self.secured:
            properties += self._secure(controller_port)
            format_extra = scram_arguments(self.tls_dir)
        write_private(self.config_file, properties + self.extra_properties)
        java = self._java_command(jars)
        argfile = self.state_dir / "storage-tool.args"
        cluster_id = storage_tool(java, argfile, "random-uuid").split()[-1]
        format_args = ["format", "-t", cluster_id, "-c", str(self.config_file), *format_extra]
        storage_tool(java, argfile, *format_args)
        return self._launch(java, timeout)

    def _secure(self, controller_port: int) -> str:
        """Fresh certificates and passwords; the secured listeners' server.properties lines."""
        assert self.port is not None
        shutil.rmtree(self.tls_dir, ignore_errors=True)
        write_tls_files(self.tls_dir)
        sasl_ssl_port, ssl_port = free_ports(2, taken=[self.port, controller_port])
        write_private(self._listeners_file, f"127.0.0.1:{sasl_ssl_port} 127.0.0.1:{ssl_port}\n")
        return render_security_properties(
            self.port, sasl_ssl_port, ssl_port, controller_port, self.tls_dir
        )

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """End the broker process with `sig` and wait until it is gone; keep its data and port.

        For failure drills: `restart()` brings the same broker (topics, offsets, port) back.
        """
        pid = self.recorded_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if not self._wait_gone(pid, STOP_TIMEOUT):
                raise BrokerError(f"broker pid {pid} did not exit after {sig.name}")
        self._forget()

    def restart(self, timeout: float = 90) -> str:
        """Start the broker again on its existing storage and port after `kill()`."""
        if self.port is None or not self.config_file.exists():
            raise BrokerError("restart() needs a broker that was started and killed before")
        return self._launch(self._java_command(ensure_jars()), timeout)

    def _java_command(self, jars: Path) -> list[str]:
        log4j = self.state_dir / "log4j2.properties"
        flags = [*JVM_FLAGS, *self.jvm_flags, f"-Dlog4j2.configurationFile={log4j}"]
        return [java_binary(), *flags, "-cp", f"{jars}/*"]

    def _launch(self, java: list[str], timeout: float) -> str:
        config = str(self.config_file)
        started = time.monotonic()
        # Launched through sh so the broker is not our child: init reaps it, and no Popen object
        # outlives `up` (Python warns about those, an error under pytest's filterwarnings).
        # Its own session keeps it alive after the CLI exits or Ctrl-C hits the shell that ran it.
        # The log is created afresh by the shell's redirection, under UMASK like Kafka's files.
        self.log_file.unlink(missing_ok=True)
        spawn = subprocess.run(
            ["/bin/sh", "-c", _SPAWN, "sh", str(self.log_file), *java, "kafka.Kafka", config],
            capture_output=True,
            text=True,
            check=True,
            cwd=self.state_dir,
            start_new_session=True,
            umask=UMASK,
        )
        pid = int(spawn.stdout)
        write_private(self.pid_file, f"{pid}\n")
        write_private(self.port_file, f"{self.port}\n")

        def alive() -> bool:
            return is_our_broker(pid, self.config_file)

        if not self._serves(started + timeout, alive):
            why = f"was not ready within {timeout:.0f}s" if alive() else "exited"
            log_tail = tail(self.log_file.read_text(errors="replace"))
            self.stop()
            raise BrokerError(f"Kafka broker {why}; end of {self.log_file}:\n{log_tail}")
        elapsed = time.monotonic() - started
        say(f"Kafka {KAFKA_VERSION} ready at {self.bootstrap} in {elapsed:.1f}s")
        return self.bootstrap

    def _serves(self, deadline: float, alive: Callable[[], bool]) -> bool:
        """Whether the launched process serves clients by `deadline` (False once not `alive`)."""
        return asyncio.run(answers_metadata(self.bootstrap, deadline, alive))

    def _choose_port(self) -> int:
        if self._requested_port is not None:
            if not port_is_free(self._requested_port):
                raise BrokerError(f"port {self._requested_port} on 127.0.0.1 is already in use")
            return self._requested_port
        if self.secured:  # its clients take the addresses `up --secured` prints
            return free_port()
        # Never another port in silence: the settings' default says 9092, and a client would
        # reach whatever holds it (seen: a run joined another engineer's broker).
        if not port_is_free(ports.DEFAULT_PORT):
            raise BrokerError(
                f"port {ports.DEFAULT_PORT} on 127.0.0.1 is in use (another broker?); stop it, or "
                f"start on another port with `up --port N` and point clients at it "
                f"(KAFKA_BOOTSTRAP_SERVERS=$(python -m consumer.devkit.broker bootstrap))"
            )
        return ports.DEFAULT_PORT

    def recorded_pid(self) -> int | None:
        """The pid of this state dir's broker if it is still alive; stale pid files are removed."""
        try:
            pid = int(self.pid_file.read_text())
            self.port = int(self.port_file.read_text())
        except (OSError, ValueError):
            pid = None
        if pid is not None and is_our_broker(pid, self.config_file):
            return pid
        self._forget()
        return None

    def answers(self, timeout: float = 5.0) -> bool:
        """Whether the recorded broker serves metadata within `timeout` seconds."""
        pid = self.recorded_pid()
        if pid is None:
            return False

        def alive() -> bool:
            return is_our_broker(pid, self.config_file)

        return asyncio.run(answers_metadata(self.bootstrap, time.monotonic() + timeout, alive))

    def stop(self) -> int | None:
        """SIGTERM, wait up to STOP_TIMEOUT seconds, then SIGKILL; forget pid, port and data.

        Returns the pid that was stopped (None if none ran) only once that process has exited.
        """
        pid = self.recorded_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                if not self._wait_gone(pid, STOP_TIMEOUT):
                    say(f"broker pid {pid} ignored SIGTERM for {STOP_TIMEOUT:.0f}s; killing it")
                    os.kill(pid, signal.SIGKILL)
                    if not self._wait_gone(pid, STOP_TIMEOUT):
                        raise BrokerError(f"broker pid {pid} did not exit after SIGKILL")
        self._forget()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return pid

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not exited(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _forget(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        self.port_file.unlink(missing_ok=True)

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
