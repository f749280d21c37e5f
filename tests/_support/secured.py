"""Settings for the secured test broker's listeners, as the environment a user would set."""

from __future__ import annotations

import os
import subprocess
import sys

from consumer.devkit.broker.security import PLAIN_USER, SCRAM_USER, Security
from consumer.kafka.security import checked
from consumer.settings.config import KafkaSettings, load_settings
from tests._support.kafka_helpers import (
    REPO,
)

MODES = ("scram", "plain", "mtls")
"""SASL_SSL with SCRAM-SHA-512, SASL_SSL with PLAIN, SSL with a client certificate."""


def secured_env(security: Security, mode: str, *, password_file: bool = False) -> dict[str, str]:
    """``RECORDING_CONSUMER__KAFKA__*`` variables that reach `security` in `mode`."""
    prefix = "RECORDING_CONSUMER__KAFKA__"
    env = {f"{prefix}SSL_CAFILE": str(security.cafile)}
    if mode == "mtls":
        env |= {
            "KAFKA_BOOTSTRAP_SERVERS": security.ssl,
            f"{prefix}SECURITY_PROTOCOL": "SSL",
            f"{prefix}SSL_CERTFILE": str(security.certfile),
            f"{prefix}SSL_KEYFILE": str(security.keyfile),
        }
        return env
    user, mechanism = {"scram": (SCRAM_USER, "SCRAM-SHA-512"), "plain": (PLAIN_USER, "PLAIN")}[mode]
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": security.sasl_ssl,
        f"{prefix}SECURITY_PROTOCOL": "SASL_SSL",
        f"{prefix}SASL_MECHANISM": mechanism,
        f"{prefix}SASL_USERNAME": user,
    }
    if password_file:
        env[f"{prefix}SASL_PASSWORD_FILE"] = str(security.password_file(user))
    else:
        env[f"{prefix}SASL_PASSWORD"] = security.password(user)
    return env


def secured_settings(security: Security, mode: str) -> KafkaSettings:
    """The [kafka] settings `secured_env` makes, validated as at start-up."""
    env = secured_env(security, mode)
    return checked(load_settings(environ=env), env).kafka


CONNECT_DEADLINE = 60.0
"""The issue's bound on how long a worker that cannot connect may take to exit."""


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`recording-consumer ARGS` in a child process with `env` added to ours."""
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        timeout=timeout,
        check=False,
    )
