"""The secured listeners of a local broker: certificates made at start, SCRAM and PLAIN users.

A secured `LocalBroker` keeps its PLAINTEXT listener (for the broker itself and for tests' own
set-up) and adds a ``SASL_SSL`` listener (SCRAM-SHA-512 and PLAIN) and an ``SSL`` listener that
requires a client certificate. Everything a client needs is written under ``<state>/tls/``.
Needs trustme (a dev dependency), imported only when a secured broker is started.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from consumer.devkit.broker.private import private_dir, write_private

SCRAM_USER = "scram-user"
"""Authenticates with SCRAM-SHA-512 (created at storage-format time, see `scram_arguments`)."""
PLAIN_USER = "plain-user"
"""Authenticates with PLAIN (listed in the listener's JAAS line)."""


@dataclass(frozen=True, slots=True)
class Security:
    """What a client needs to reach a secured local broker."""

    sasl_ssl: str
    """Bootstrap address of the SASL_SSL listener."""
    ssl: str
    """Bootstrap address of the SSL listener, which requires a client certificate."""
    tls_dir: Path

    @property
    def cafile(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def certfile(self) -> Path:
        """A client certificate the broker's CA signed."""
        return self.tls_dir / "client.pem"

    @property
    def keyfile(self) -> Path:
        return self.tls_dir / "client.key"

    def password_file(self, user: str) -> Path:
        return self.tls_dir / f"{user}.password"

    def password(self, user: str) -> str:
        return self.password_file(user).read_text()


def write_tls_files(tls_dir: Path) -> None:
    """A fresh CA, a server certificate for 127.0.0.1/localhost, a client certificate, passwords.

    Kafka reads PEM key stores only with PKCS#8 keys; trustme writes EC keys as SEC1, so every
    key is re-serialized.
    """
    import trustme

    private_dir(tls_dir)
    ca = trustme.CA(organization_name="recording-consumer devkafka")
    server = ca.issue_cert("127.0.0.1", "localhost", common_name="devkafka")
    client = ca.issue_cert("client@devkafka", common_name="recording-consumer-client")
    write_private(tls_dir / "ca.pem", ca.cert_pem.bytes())
    chain = b"".join(blob.bytes() for blob in server.cert_chain_pems)
    write_private(tls_dir / "server-keystore.pem", _pkcs8(server.private_key_pem.bytes()) + chain)
    write_private(tls_dir / "client.pem", b"".join(blob.bytes() for blob in client.cert_chain_pems))
    write_private(tls_dir / "client.key", _pkcs8(client.private_key_pem.bytes()))
    for user in (SCRAM_USER, PLAIN_USER):
        # URL-safe characters only: the password goes into a JAAS line and a --add-scram spec.
        write_private(tls_dir / f"{user}.password", secrets.token_urlsafe(18).encode())


def scram_arguments(tls_dir: Path) -> list[str]:
    """StorageTool format arguments that create the SCRAM user: KRaft has no other way before
    the broker runs. They hold the password: pass them in a private argument file, never on a
    command line (see `consumer.devkit.broker`)."""
    password = (tls_dir / f"{SCRAM_USER}.password").read_text()
    return ["--add-scram", f"SCRAM-SHA-512=[name={SCRAM_USER},password={password}]"]


def render_security_properties(
    plaintext_port: int, sasl_ssl_port: int, ssl_port: int, controller_port: int, tls_dir: Path
) -> str:
    """Lines appended to server.properties; Java keeps the last value of a repeated key."""
    plain_password = (tls_dir / f"{PLAIN_USER}.password").read_text()
    host = "127.0.0.1"
    ports = {"SASL_SSL": sasl_ssl_port, "SSL": ssl_port, "PLAINTEXT": plaintext_port}
    listeners = ",".join(f"{name}://{host}:{port}" for name, port in ports.items())
    login = "org.apache.kafka.common.security"
    scram_jaas = f"{login}.scram.ScramLoginModule required;"
    plain_jaas = f'{login}.plain.PlainLoginModule required user_{PLAIN_USER}="{plain_password}";'
    return f"""
# Secured listeners (consumer/devkit/broker/security.py)
listeners={listeners},CONTROLLER://{host}:{controller_port}
advertised.listeners={listeners}
listener.security.protocol.map=SASL_SSL:SASL_SSL,SSL:SSL,PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
ssl.keystore.type=PEM
ssl.keystore.location={tls_dir / "server-keystore.pem"}
ssl.truststore.type=PEM
ssl.truststore.location={tls_dir / "ca.pem"}
listener.name.ssl.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram_jaas}
listener.name.sasl_ssl.plain.sasl.jaas.config={plain_jaas}
"""


def _pkcs8(key_pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
