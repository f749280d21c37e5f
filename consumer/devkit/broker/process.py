"""A local single-node Apache Kafka (KRaft) for development and tests, from Maven Central jars.

There is no Docker here, so the broker runs as a plain, detached JVM process. Jars are resolved with
Maven once into ``$DEVKAFKA_HOME/jars/<version>/`` (default ``./.devkafka``); the long-lived broker
of ``make kafka-up`` keeps its state in ``$DEVKAFKA_HOME/run/``. With ``KAFKA_BOOTSTRAP_SERVERS``
set, nothing is started and that address is used instead.

    python -m consumer.devkit.broker up|down|status|bootstrap [--secured] [--port N] [--nodes N]

The plain broker listens on 127.0.0.1:9092, the settings' default: when that port is taken
(someone else's broker?), `up` refuses instead of choosing another port behind the settings'
back; ``up --port N`` picks one, and `bootstrap` prints whatever the running broker uses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from consumer.devkit.broker import security
from consumer.devkit.broker.private import UMASK, private_dir, write_private
from consumer.devkit.broker.security import PLAIN_USER, SCRAM_USER, Security

KAFKA_VERSION = os.environ.get("DEVKAFKA_VERSION") or "4.1.1"
"""The Apache Kafka release: ``$DEVKAFKA_VERSION`` (``make compat`` runs several), else this."""
LOG4J_VERSION = "2.24.3"
DEFAULT_PORT = 9092
STOP_TIMEOUT = 20.0

# Serial GC: a small dev heap gains nothing from G1's extra threads on 2 cores (start-up measured
# 1.4-1.8 s either way). C1-only (TieredStopAtLevel=1) gained nothing and would skew benchmarks.
JVM_FLAGS = ["-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:-UsePerfData"]

DEPENDENCIES = [
    ("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
    # Kafka 4.x still uses SLF4J 1.7: with the SLF4J 2 binding (log4j-slf4j2-impl) it logs nothing.
    ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
    ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
]
POM = (
    '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>\n'
    "  <groupId>local.devkafka</groupId><artifactId>jars</artifactId><version>1</version>\n"
    "  <packaging>pom</packaging>\n  <dependencies>\n"
    + "".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>\n"
        for g, a, v in DEPENDENCIES
    )
    + "  </dependencies>\n</project>\n"
)

# sh arguments: the log file, then the command; prints the broker's pid.
_SPAWN = 'log=$1; shift; "$@" >"$log" 2>&1 </dev/null & echo $!'

LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
# Keeps the "Kafka Server started" line, so the log shows when and whether the broker came up.
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
"""


class BrokerError(RuntimeError):
    """The local broker could not be resolved, started, reached or stopped; says why for humans."""


def devkafka_home() -> Path:
    """Cache and state root: ``$DEVKAFKA_HOME``, else ``.devkafka`` in the working directory."""
    return Path(os.environ.get("DEVKAFKA_HOME") or ".devkafka").absolute()


def _say(message: str) -> None:
    # stdout is reserved for the bootstrap address, which Makefiles capture with $(shell ...).
    print(f"devkafka: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # pytest and `make kafka-up` may race on the shared jar cache and on the run directory.
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_jars() -> Path:
    """Resolve the broker's jars with Maven once; return the directory holding them."""
    home = devkafka_home()
    jars = home / "jars" / KAFKA_VERSION
    marker = jars / ".resolved"
    with _locked(home / "jars" / ".lock"):
        if marker.exists():
            return jars
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is not on PATH; it is needed once to fetch Kafka's jars")
        # No marker means an earlier resolve was interrupted; its leftovers may be partial jars.
        shutil.rmtree(jars, ignore_errors=True)
        jars.mkdir(parents=True)
        (jars / "pom.xml").write_text(POM)
        _say(f"resolving Kafka {KAFKA_VERSION} jars with Maven into {jars}")
        started = time.monotonic()
        cmd = [mvn, "-q", "-B", "-f", str(jars / "pom.xml"), "dependency:copy-dependencies"]
        cmd += ["-DincludeScope=runtime", f"-DoutputDirectory={jars}"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)
        if done.returncode != 0:
            raise BrokerError(f"Maven could not resolve Kafka's jars:\n{_tail(done.stdout)}")
        marker.write_text(f"kafka_2.13 {KAFKA_VERSION}\n")
        _say(f"resolved in {time.monotonic() - started:.1f}s")
        return jars


def free_port() -> int:
    """A port the OS considers free right now on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int, taken: Iterable[int | None] = ()) -> list[int]:
    """`count` distinct free ports, none of them in `taken`.

    Sockets are held open together: closed one by one, the OS may hand the same port out twice
    (seen as a broker refusing "two listeners on the same port").
    """
    with contextlib.ExitStack() as held:
        ports: list[int] = []
        avoid = set(taken)
        while len(ports) < count:
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            if port not in avoid:
                ports.append(port)
                avoid.add(port)
        return ports


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the JVM does, so a lingering TIME_WAIT socket from a previous broker is no conflict.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def render_server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    """The broker's server.properties: one combined broker+controller node on 127.0.0.1."""
    return f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
"""


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


async def _answers_metadata(bootstrap: str, deadline: float, alive: Callable[[], bool]) -> bool:
    # An open port is not enough: the broker must be registered and serving metadata.
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)  # each refused attempt would log an ERROR
    try:
        while alive():
            remaining = deadline - time.monotonic()
            timeout_ms = int(max(0.5, min(5.0, remaining)) * 1000)
            client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
            try:
                await client.bootstrap()
                if client.cluster.brokers():
                    return True
            except (TimeoutError, KafkaError, OSError):
                pass
            finally:
                await client.close()
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.2)
        return False
    finally:
        aiokafka_log.setLevel(level)


class LocalBroker:
    """One KRaft broker process whose config, data, log and pid live in `state_dir`.

    `secured` adds SASL_SSL and mutual-TLS SSL listeners beside the PLAINTEXT one (`security`).
    `state_dir` is 0700 and every file in it 0600 from creation (`consumer.devkit.broker.private`).
    `extra_properties` are appended to server.properties (the last value of a key wins) and
    `jvm_flags` given to the JVM: how variants such as `devkafka_oauth` configure the broker.
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
            format_extra = security.scram_arguments(self.tls_dir)
        write_private(self.config_file, properties + self.extra_properties)
        java = self._java_command(jars)
        argfile = self.state_dir / "storage-tool.args"
        cluster_id = _storage_tool(java, argfile, "random-uuid").split()[-1]
        format_args = ["format", "-t", cluster_id, "-c", str(self.config_file), *format_extra]
        _storage_tool(java, argfile, *format_args)
        return self._launch(java, timeout)

    def _secure(self, controller_port: int) -> str:
        """Fresh certificates and passwords; the secured listeners' server.properties lines."""
        assert self.port is not None
        shutil.rmtree(self.tls_dir, ignore_errors=True)
        security.write_tls_files(self.tls_dir)
        sasl_ssl_port, ssl_port = free_ports(2, taken=[self.port, controller_port])
        write_private(self._listeners_file, f"127.0.0.1:{sasl_ssl_port} 127.0.0.1:{ssl_port}\n")
        return security.render_security_properties(
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
        return [_java(), *flags, "-cp", f"{jars}/*"]

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
            return _is_our_broker(pid, self.config_file)

        if not self._serves(started + timeout, alive):
            why = f"was not ready within {timeout:.0f}s" if alive() else "exited"
            log_tail = _tail(self.log_file.read_text(errors="replace"))
            self.stop()
            raise BrokerError(f"Kafka broker {why}; end of {self.log_file}:\n{log_tail}")
        elapsed = time.monotonic() - started
        _say(f"Kafka {KAFKA_VERSION} ready at {self.bootstrap} in {elapsed:.1f}s")
        return self.bootstrap

    def _serves(self, deadline: float, alive: Callable[[], bool]) -> bool:
        """Whether the launched process serves clients by `deadline` (False once not `alive`)."""
        return asyncio.run(_answers_metadata(self.bootstrap, deadline, alive))

    def _choose_port(self) -> int:
        if self._requested_port is not None:
            if not _port_is_free(self._requested_port):
                raise BrokerError(f"port {self._requested_port} on 127.0.0.1 is already in use")
            return self._requested_port
        if self.secured:  # its clients take the addresses `up --secured` prints
            return free_port()
        # Never another port in silence: the settings' default says 9092, and a client would
        # reach whatever holds it (seen: a run joined another engineer's broker).
        if not _port_is_free(DEFAULT_PORT):
            raise BrokerError(
                f"port {DEFAULT_PORT} on 127.0.0.1 is in use (another broker?); stop it, or "
                f"start on another port with `up --port N` and point clients at it "
                f"(KAFKA_BOOTSTRAP_SERVERS=$(python -m consumer.devkit.broker bootstrap))"
            )
        return DEFAULT_PORT

    def recorded_pid(self) -> int | None:
        """The pid of this state dir's broker if it is still alive; stale pid files are removed."""
        try:
            pid = int(self.pid_file.read_text())
            self.port = int(self.port_file.read_text())
        except (OSError, ValueError):
            pid = None
        if pid is not None and _is_our_broker(pid, self.config_file):
            return pid
        self._forget()
        return None

    def answers(self, timeout: float = 5.0) -> bool:
        """Whether the recorded broker serves metadata within `timeout` seconds."""
        pid = self.recorded_pid()
        if pid is None:
            return False

        def alive() -> bool:
            return _is_our_broker(pid, self.config_file)

        return asyncio.run(_answers_metadata(self.bootstrap, time.monotonic() + timeout, alive))

    def stop(self) -> int | None:
        """SIGTERM, wait up to STOP_TIMEOUT seconds, then SIGKILL; forget pid, port and data.

        Returns the pid that was stopped (None if none ran) only once that process has exited.
        """
        pid = self.recorded_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                if not self._wait_gone(pid, STOP_TIMEOUT):
                    _say(f"broker pid {pid} ignored SIGTERM for {STOP_TIMEOUT:.0f}s; killing it")
                    os.kill(pid, signal.SIGKILL)
                    if not self._wait_gone(pid, STOP_TIMEOUT):
                        raise BrokerError(f"broker pid {pid} did not exit after SIGKILL")
        self._forget()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return pid

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not _exited(pid):
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


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home, "bin", "java")) if java_home else shutil.which("java")
    if not java:
        raise BrokerError("java is not on PATH (and JAVA_HOME is unset); Kafka needs Java 17+")
    return java


def _storage_tool(java: list[str], argfile: Path, *args: str) -> str:
    """Run Kafka's StorageTool with `args` passed in `argfile`, removed afterwards.

    The format arguments may hold a SCRAM password, and any local user can read a command line
    (ps, /proc/<pid>/cmdline); the java launcher reads the main class and its arguments from a
    private ``@file`` instead, so the command line shows only the file's name.
    """
    write_private(
        argfile, "".join(f"{_argfile_quoted(a)}\n" for a in ("kafka.tools.StorageTool", *args))
    )
    try:
        done = subprocess.run(
            [*java, f"@{argfile}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            umask=UMASK,
        )
    finally:
        argfile.unlink(missing_ok=True)
    if done.returncode != 0:
        output = _tail(done.stdout + done.stderr)
        # Only the subcommand: the arguments may hold a SCRAM password.
        raise BrokerError(f"kafka.tools.StorageTool {args[0]} failed:\n{output}")
    return done.stdout


def _argfile_quoted(arg: str) -> str:
    # The java launcher's @file syntax: a double-quoted argument with backslash escapes.
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _exited(pid: int) -> bool:
    """Whether `pid` has finished exiting: gone, or a zombie (its sockets and memory are freed).

    A dying JVM's command line reads empty before its listeners close, so `_is_our_broker`
    turning False is no proof the broker is gone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _is_our_broker(pid: int, config_file: Path) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # A pid from a stale file may since belong to another process; never signal that one.
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self").exists():
        return True
    try:
        return str(config_file).encode() in cmdline.read_bytes()
    except OSError:
        return False


def _run_broker(secured: bool = False, port: int | None = None) -> LocalBroker:
    if secured:
        return LocalBroker(devkafka_home() / "secured", port, secured=True)
    return LocalBroker(devkafka_home() / "run", port)


def up(secured: bool = False, port: int | None = None) -> str:
    """Ensure the long-lived broker in ``$DEVKAFKA_HOME/run`` is serving; return its bootstrap.

    `secured`: the one in ``$DEVKAFKA_HOME/secured``, and its SASL_SSL listener's address.
    `port`: the plain listener's port when it has to be started (default 9092, never another).
    """
    broker = _run_broker(secured, port)
    with _locked(broker.state_dir / ".lock"):
        if not broker.answers():
            broker.stop()  # a recorded broker that is alive but silent is hung; start afresh
            broker.start()
        if secured:
            _describe_security(broker.security)
            return broker.security.sasl_ssl
        return broker.bootstrap


def _describe_security(security: Security) -> None:
    tls = security.tls_dir
    users = f"{SCRAM_USER} (SCRAM-SHA-512), {PLAIN_USER} (PLAIN)"
    _say(f"SASL_SSL {security.sasl_ssl}: users {users}; passwords in {tls}/<user>.password")
    _say(f"SSL {security.ssl}: client certificate {security.certfile}, key {security.keyfile}")
    _say(f"CA certificate: {security.cafile}")


def down(secured: bool = False) -> int | None:
    """Stop the long-lived broker, if one is running; return its pid once it has exited."""
    broker = _run_broker(secured)
    with _locked(broker.state_dir / ".lock"):
        return broker.stop()


def bootstrap_servers() -> str:
    """``$KAFKA_BOOTSTRAP_SERVERS`` if set, else the long-lived local broker's (started if needed).

    Synchronous (it may run an event loop): call it before, not inside, a running asyncio loop.
    """
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or up()


def main(argv: list[str] | None = None) -> int:
    """The ``python -m consumer.devkit.broker`` command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m consumer.devkit.broker",
        description="A local Apache Kafka broker for development, from Maven Central's jars.",
    )
    secured = argparse.ArgumentParser(add_help=False)
    secured.add_argument(
        "--secured",
        action="store_true",
        help="the broker with SASL_SSL (SCRAM-SHA-512, PLAIN) and mutual-TLS SSL listeners",
    )
    secured.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="above 1: the long-lived replicated cluster of that many brokers and a controller "
        "(RF 3, min.insync.replicas 2), kept apart from the single broker (see devkafka_cluster)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up_command = sub.add_parser(
        "up",
        parents=[secured],
        help="start the long-lived broker unless it is running; print its address",
        description="Start the long-lived broker unless it is running, then print its address. "
        f"It listens on 127.0.0.1:{DEFAULT_PORT} (the settings' default) unless --port says "
        "otherwise; a taken port is an error, never a silent switch.",
    )
    up_command.add_argument(
        "--port", type=int, help=f"the plain listener's port (default {DEFAULT_PORT})"
    )
    sub.add_parser(
        "down",
        parents=[secured],
        help="stop the long-lived broker; returns once its process has exited",
    )
    sub.add_parser(
        "status", parents=[secured], help="print 'running <address> (pid N)' or 'stopped'"
    )
    sub.add_parser(
        "bootstrap",
        parents=[secured],
        help="print the address clients should use: $KAFKA_BOOTSTRAP_SERVERS if set, else the "
        "long-lived broker's (started first if it is not running)",
    )
    args = parser.parse_args(argv)
    command, is_secured = args.command, args.secured
    try:
        if args.nodes > 1:
            if is_secured or getattr(args, "port", None) is not None:
                raise BrokerError("--nodes takes neither --secured nor --port")
            # Imported here: the cluster module builds on this one.
            from consumer.devkit.broker import cluster

            return cluster.command(command, args.nodes)
        if command == "up" or (command == "bootstrap" and is_secured):
            print(up(is_secured, getattr(args, "port", None)))
        elif command == "bootstrap":
            print(bootstrap_servers())
        elif command == "down":
            pid = down(is_secured)
            _say("not running" if pid is None else f"stopped (pid {pid} exited)")
        else:
            broker = _run_broker(is_secured)
            pid = broker.recorded_pid()
            if pid is None:
                print("stopped")
            else:
                address = broker.security.sasl_ssl if is_secured else broker.bootstrap
                print(f"running {address} (pid {pid})")
    except BrokerError as err:
        _say(str(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
