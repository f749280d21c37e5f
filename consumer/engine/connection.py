"""How every Kafka client of the project connects: address, client id, TLS and SASL.

`client_options` is the one place the ``[kafka]`` security keys become aiokafka arguments; the
worker, producers, admin clients, CLI tools, testing kit and benchmarks all pass it along.
`check_security` validates those keys together at start-up; `start` starts a client and turns
a failure to connect into a `KafkaConnectError` whose message is one line naming the cause.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    BrokerResponseError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from consumer.errors import ConfigError, KafkaConnectError
from consumer.secret import MASK, Secret, warn_if_shared

if TYPE_CHECKING:
    from consumer.config import KafkaSettings

SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
DIAGNOSE_TIMEOUT = 15.0
"""Seconds the probe after a failed start waits per bootstrap address."""

_HOSTNAME_MISMATCH = 62
"""OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH."""
_SASL_KEYS = ("sasl_mechanism", "sasl_username", "sasl_password", "sasl_password_file")
_FILE_KEYS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
_PEM_MARKERS = {
    "ssl_cafile": b"-----BEGIN CERTIFICATE-----",
    "ssl_certfile": b"-----BEGIN CERTIFICATE-----",
    "ssl_keyfile": b"PRIVATE KEY-----",
}


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (consumer, producer, admin) to reach `kafka`."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in TLS_PROTOCOLS:
        options["ssl_context"] = ssl_context(kafka)
    if kafka.security_protocol in SASL_PROTOCOLS:
        assert kafka.sasl_password is not None, "check_security resolves the password"
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.reveal()
    return options


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """Verifies brokers against ``ssl_cafile`` (else the system store); presents the client cert."""
    context = ssl.create_default_context(cafile=kafka.ssl_cafile)
    context.check_hostname = kafka.ssl_check_hostname
    if kafka.ssl_certfile:
        context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
    return context


def check_security(kafka: KafkaSettings) -> KafkaSettings:
    """Validate the security keys as a whole and read ``sasl_password_file``; returns `kafka`
    with the password in ``sasl_password``. Raises ConfigError naming the key at fault."""
    _check_sasl(kafka)
    _check_tls(kafka)
    return _with_password(kafka)


def _check_sasl(kafka: KafkaSettings) -> None:
    protocol = kafka.security_protocol
    if protocol not in SASL_PROTOCOLS:
        _unused(kafka, _SASL_KEYS, "SASL needs SASL_SSL or SASL_PLAINTEXT")
        return
    for key in ("sasl_mechanism", "sasl_username"):
        if not getattr(kafka, key):
            raise _error(key, f"required with security_protocol {protocol}")
    if kafka.sasl_password is not None and kafka.sasl_password_file is not None:
        raise _error("sasl_password_file", "set either this or kafka.sasl_password, not both")
    if kafka.sasl_password is None and kafka.sasl_password_file is None:
        why = f"required with security_protocol {protocol} (or sasl_password_file)"
        raise _error("sasl_password", why)


def _unused(kafka: KafkaSettings, keys: Iterable[str], needs: str) -> None:
    """Refuse the first of `keys` that is set although the security protocol does not use it."""
    for key in keys:
        if getattr(kafka, key) is not None:
            protocol = kafka.security_protocol
            raise _error(key, f"set, but security_protocol is {protocol} ({needs})")


def _check_tls(kafka: KafkaSettings) -> None:
    protocol = kafka.security_protocol
    if protocol not in TLS_PROTOCOLS:
        _unused(kafka, _FILE_KEYS, "TLS needs SSL or SASL_SSL")
        return
    if kafka.ssl_keyfile and not kafka.ssl_certfile:
        raise _error("ssl_keyfile", "set without kafka.ssl_certfile")
    for key in _FILE_KEYS:
        path = getattr(kafka, key)
        if path is not None:
            _check_pem(key, path)
    try:
        ssl_context(kafka)
    except ssl.SSLError as exc:
        key = "ssl_keyfile" if kafka.ssl_keyfile else "ssl_certfile"
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise _error(key, "is not the private key of kafka.ssl_certfile") from None
        raise _error(key, f"cannot be used with kafka.ssl_certfile: {exc.reason or exc}") from None


def _with_password(kafka: KafkaSettings) -> KafkaSettings:
    if kafka.sasl_password_file is None:
        return kafka
    try:
        text = _read("sasl_password_file", kafka.sasl_password_file).decode()
    except UnicodeDecodeError:
        raise _error("sasl_password_file", f"{kafka.sasl_password_file} is not UTF-8") from None
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise _error("sasl_password_file", f"{kafka.sasl_password_file} is empty")
    warn_if_shared(kafka.sasl_password_file, key="kafka.sasl_password_file")
    return msgspec.structs.replace(kafka, sasl_password=Secret(password))


def _check_pem(key: str, path: str) -> None:
    data = _read(key, path)
    if _PEM_MARKERS[key] not in data:
        what = "private key" if key == "ssl_keyfile" else "certificate"
        raise _error(key, f"{path} holds no PEM {what}")
    if key == "ssl_keyfile" and b"ENCRYPTED" in data:
        # OpenSSL would ask for the passphrase on the terminal, or fail obscurely without one.
        raise _error(key, f"{path} is encrypted; give an unencrypted (PKCS#8 or PEM) key")


def _read(key: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _error(key, f"cannot read {path}: {exc.strerror}") from None


def _error(key: str, reason: str) -> ConfigError:
    return ConfigError(f"kafka.{key}: {reason}", f"kafka.{key}")


async def start(client: Any, kafka: KafkaSettings) -> None:
    """``await client.start()``; if it cannot connect, close it and raise `KafkaConnectError`.

    aiokafka's own error only says it could not bootstrap, so the bootstrap addresses are
    probed once more to learn the cause. aiokafka's per-address error lines are held back
    meanwhile: on failure the raised error says it once; on success they are logged after all.
    """
    log = logging.getLogger("aiokafka")
    held = _HeldBootstrapErrors()
    log.addFilter(held)
    try:
        await client.start()
    except KafkaConnectionError as exc:
        await (client.stop() if hasattr(client, "stop") else client.close())
        raise await diagnose(kafka) or connect_error(exc, kafka) from None
    finally:
        log.removeFilter(held)
    for record in held.records:
        log.handle(record)


async def diagnose(kafka: KafkaSettings) -> KafkaConnectError | None:
    """Connect to each bootstrap address as a client would; the most telling failure, or None
    if one of them answers. Failures retrying cannot fix are preferred over the others."""
    options = client_options(kafka)
    del options["bootstrap_servers"]
    failures = []
    for host, port, _ in collect_hosts(kafka.bootstrap_servers, randomize=False):
        try:
            async with asyncio.timeout(DIAGNOSE_TIMEOUT):
                conn = await create_conn(
                    host, port, request_timeout_ms=int(DIAGNOSE_TIMEOUT * 1000), **options
                )
                try:
                    # As bootstrap does: some listeners only hang up at the first real request.
                    await conn.send(MetadataRequest([]))
                finally:
                    conn.close()
        except (OSError, KafkaError, TimeoutError) as exc:
            failures.append(connect_error(exc, kafka, f"{host}:{port}"))
            continue
        return None
    return min(failures, key=lambda failure: failure.retryable, default=None)


def connect_error(
    exc: BaseException, kafka: KafkaSettings, address: str | None = None
) -> KafkaConnectError:
    """`exc`, raised while connecting to `address`, as one line naming the cause (secret-free)."""
    cause, retryable = _describe(exc, kafka)
    if kafka.sasl_password is not None and kafka.sasl_password.reveal():
        cause = cause.replace(kafka.sasl_password.reveal(), MASK)
    cause = " ".join(cause.split())
    where = address or kafka.bootstrap_servers
    line = f"cannot connect to Kafka at {where} ({kafka.security_protocol}): {cause}"
    return KafkaConnectError(line, retryable=retryable, cause=cause)


def _describe(exc: BaseException, kafka: KafkaSettings) -> tuple[str, bool]:
    """The cause in words, and whether trying again later could help."""
    ca = f"kafka.ssl_cafile {kafka.ssl_cafile}" if kafka.ssl_cafile else "the system trust store"
    if isinstance(exc, SaslAuthenticationFailed):
        return (
            f"authentication failed for user {kafka.sasl_username!r} with mechanism "
            f"{kafka.sasl_mechanism} (wrong password or unknown user): {_text(exc)}",
            False,
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return f"SASL mechanism {kafka.sasl_mechanism} is not enabled on this listener", False
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == _HOSTNAME_MISMATCH:
            why = "the broker's certificate must name the host clients connect to"
        else:
            why = f"the broker's certificate checked against {ca}"
        return f"certificate verify failed: {exc.verify_message} ({why})", False
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc} (is this a TLS listener?)", False
    if isinstance(exc, KafkaConnectionError) and "closed" in str(exc):
        return _closed_during_set_up(kafka)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running, and is this its address?)", True
    if isinstance(exc, TimeoutError):
        return "no answer in time", True
    if isinstance(exc, OSError):
        return exc.strerror or str(exc), True
    return _text(exc), True


def _closed_during_set_up(kafka: KafkaSettings) -> tuple[str, bool]:
    protocol = kafka.security_protocol
    closed = "the broker closed the connection during set-up"
    if protocol == "SSL" and not kafka.ssl_certfile:
        why = "it may require a client certificate (kafka.ssl_certfile is not set), or SASL"
    elif protocol == "SSL":
        why = f"it may not accept the client certificate kafka.ssl_certfile {kafka.ssl_certfile}"
    elif protocol in TLS_PROTOCOLS:
        why = "does this listener expect another kafka.security_protocol?"
    else:
        # Also what a broker going down looks like: worth another try.
        return f"{closed} (does this listener expect TLS or SASL?)", True
    return f"{closed}: {why}", False


def _text(exc: BaseException) -> str:
    if isinstance(exc, BrokerResponseError) and exc.args:
        return str(exc.args[0])  # without aiokafka's "[Error 58] SaslAuthenticationFailed: "
    return str(exc) or type(exc).__name__


class _HeldBootstrapErrors(logging.Filter):
    """Keeps aiokafka's per-address bootstrap failures back, in `records`."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(("Unable connect to", "Unable to request metadata")):
            self.records.append(record)
            return False
        return True
