"""The Java runtime and Apache Kafka's jars the dev broker runs on, resolved with Maven once into
``$DEVKAFKA_HOME/jars/<version>/``."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from consumer.devkit.broker.home import BrokerError, devkafka_home, locked, say, tail

KAFKA_VERSION = os.environ.get("DEVKAFKA_VERSION") or "4.1.1"
"""The Apache Kafka release: ``$DEVKAFKA_VERSION`` (``make compat`` runs several), else this."""
LOG4J_VERSION = "2.24.3"

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


def ensure_jars() -> Path:
    """Resolve the broker's jars with Maven once; return the directory holding them."""
    home = devkafka_home()
    jars = home / "jars" / KAFKA_VERSION
    marker = jars / ".resolved"
    with locked(home / "jars" / ".lock"):
        if marker.exists():
            return jars
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is not on PATH; it is needed once to fetch Kafka's jars")
        # No marker means an earlier resolve was interrupted; its leftovers may be partial jars.
        shutil.rmtree(jars, ignore_errors=True)
        jars.mkdir(parents=True)
        (jars / "pom.xml").write_text(POM)
        say(f"resolving Kafka {KAFKA_VERSION} jars with Maven into {jars}")
        started = time.monotonic()
        cmd = [mvn, "-q", "-B", "-f", str(jars / "pom.xml"), "dependency:copy-dependencies"]
        cmd += ["-DincludeScope=runtime", f"-DoutputDirectory={jars}"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)
        if done.returncode != 0:
            raise BrokerError(f"Maven could not resolve Kafka's jars:\n{tail(done.stdout)}")
        marker.write_text(f"kafka_2.13 {KAFKA_VERSION}\n")
        say(f"resolved in {time.monotonic() - started:.1f}s")
        return jars


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home, "bin", "java")) if java_home else shutil.which("java")
    if not java:
        raise BrokerError("java is not on PATH (and JAVA_HOME is unset); Kafka needs Java 17+")
    return java
