"""How every Kafka client of the project connects: address, client id, TLS and SASL.

`client_options` is the one place the ``[kafka]`` security keys become aiokafka arguments; the
worker, producers, admin clients, CLI tools, testing kit and benchmarks all pass it along.
`check_security` validates those keys together at start-up; `start` starts a client and turns
a failure to connect into a `KafkaConnectError` whose message is one line naming the cause.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec
from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from consumer.bootstrap import bootstrap_addresses
from consumer.engine.oauth import (
    CachedTokenProvider,
    ClientCredentialsTokens,
    TokenError,
    answer_error_challenges,
)
from consumer.errors import ConfigError, KafkaConnectError
from consumer.kafka.aiokafka_text import CLIENT_LOGGER, closed_by_peer, is_bootstrap_failure
from consumer.redaction import error_line, error_reason
from consumer.secret import MASK, Secret, warn_if_shared

if TYPE_CHECKING:
    from consumer.config import KafkaSettings

SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
DIAGNOSE_TIMEOUT = 15.0
"""Seconds the probe after a failed start waits per bootstrap address."""

_HOSTNAME_MISMATCH = 62
"""OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH."""
_PASSWORD_KEYS = ("sasl_username", "sasl_password", "sasl_password_file")
_OAUTH_KEYS = (
    "sasl_oauth_token_endpoint_url",
    "sasl_oauth_client_id",
    "sasl_oauth_client_secret",
    "sasl_oauth_client_secret_file",
    "sasl_oauth_scope",
)
_SASL_KEYS = ("sasl_mechanism", *_PASSWORD_KEYS, *_OAUTH_KEYS, "aws_region")
TOKEN_MECHANISMS = frozenset({"OAUTHBEARER", "AWS_MSK_IAM"})
"""Both authenticate with SASL/OAUTHBEARER; AWS_MSK_IAM's token is a presigned AWS request."""
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
    if kafka.security_protocol in SASL_PROTOCOLS and kafka.sasl_mechanism in TOKEN_MECHANISMS:
        options["sasl_mechanism"] = "OAUTHBEARER"
        options["sasl_oauth_token_provider"] = token_provider(kafka)
    elif kafka.security_protocol in SASL_PROTOCOLS:
        assert kafka.sasl_password is not None, "check_security resolves the password"
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.reveal()
    return options


_token_providers: dict[tuple[str | None, ...], CachedTokenProvider] = {}


def token_provider(kafka: KafkaSettings) -> CachedTokenProvider:
    """The OAUTHBEARER token source for `kafka`'s credentials: one per process, shared by all
    its clients, so they share one token too."""
    secret = kafka.sasl_oauth_client_secret
    url, client_id, scope = (
        kafka.sasl_oauth_token_endpoint_url,
        kafka.sasl_oauth_client_id,
        kafka.sasl_oauth_scope,
    )
    revealed = secret.reveal() if secret else None
    key = (kafka.sasl_mechanism, kafka.aws_region, url, client_id, revealed, scope)
    provider = _token_providers.get(key)
    if provider is None:
        answer_error_challenges()
        if kafka.sasl_mechanism == "AWS_MSK_IAM":
            from consumer.engine.msk_iam import MskIamTokens

            assert kafka.aws_region, "check_security resolves the region"
            provider = MskIamTokens(kafka.aws_region)
        else:
            assert url, "check_security requires it"
            assert client_id, "check_security requires it"
            assert secret, "check_security requires it"
            provider = ClientCredentialsTokens(url, client_id, secret, scope)
        _token_providers[key] = provider
    return provider


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """Verifies brokers against ``ssl_cafile`` (else the system store); presents the client cert."""
    context = ssl.create_default_context(cafile=kafka.ssl_cafile)
    context.check_hostname = kafka.ssl_check_hostname
    if kafka.ssl_certfile:
        context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
    return context


def check_security(kafka: KafkaSettings, environ: Mapping[str, str]) -> KafkaSettings:
    """Validate the security keys as a whole and read the secret files; returns `kafka` with
    the secrets in ``sasl_password`` / ``sasl_oauth_client_secret`` and AWS_MSK_IAM's region
    (``$AWS_REGION`` in `environ` by default). Raises ConfigError naming the key at fault."""
    _check_sasl(kafka)
    _check_tls(kafka)
    kafka = _with_secret(kafka, "sasl_password")
    kafka = _with_secret(kafka, "sasl_oauth_client_secret")
    if kafka.security_protocol in SASL_PROTOCOLS and kafka.sasl_mechanism == "AWS_MSK_IAM":
        region = kafka.aws_region or environ.get("AWS_REGION")
        if not region:
            raise _error("aws_region", "required with sasl_mechanism AWS_MSK_IAM (or AWS_REGION)")
        kafka = msgspec.structs.replace(kafka, aws_region=region)
    return kafka


def _check_sasl(kafka: KafkaSettings) -> None:
    protocol, mechanism = kafka.security_protocol, kafka.sasl_mechanism
    if protocol not in SASL_PROTOCOLS:
        why = f"security_protocol is {protocol} (SASL needs SASL_SSL or SASL_PLAINTEXT)"
        _unused(kafka, _SASL_KEYS, why)
        return
    if not mechanism:
        raise _error("sasl_mechanism", f"required with security_protocol {protocol}")
    if mechanism == "OAUTHBEARER":
        _unused(kafka, (*_PASSWORD_KEYS, "aws_region"), f"sasl_mechanism is {mechanism}")
        _check_oauth(kafka)
        return
    if mechanism == "AWS_MSK_IAM":
        _unused(kafka, (*_PASSWORD_KEYS, *_OAUTH_KEYS), f"sasl_mechanism is {mechanism}")
        if protocol != "SASL_SSL":
            raise _error("security_protocol", "must be SASL_SSL with sasl_mechanism AWS_MSK_IAM")
        if importlib.util.find_spec("aws_msk_iam_sasl_signer") is None:
            why = "AWS_MSK_IAM needs the msk extra: pip install 'recording-consumer[msk]'"
            raise _error("sasl_mechanism", why)
        return
    _unused(kafka, (*_OAUTH_KEYS, "aws_region"), f"sasl_mechanism is {mechanism}")
    if not kafka.sasl_username:
        raise _error("sasl_username", f"required with security_protocol {protocol}")
    _one_secret(kafka, "sasl_password", f"required with security_protocol {protocol}")


def _check_oauth(kafka: KafkaSettings) -> None:
    for key in ("sasl_oauth_token_endpoint_url", "sasl_oauth_client_id"):
        if not getattr(kafka, key):
            raise _error(key, "required with sasl_mechanism OAUTHBEARER")
    url = urlsplit(kafka.sasl_oauth_token_endpoint_url or "")
    if url.scheme not in ("https", "http") or not url.hostname:
        raise _error("sasl_oauth_token_endpoint_url", "is not an https:// (or http://) URL")
    _one_secret(kafka, "sasl_oauth_client_secret", "required with sasl_mechanism OAUTHBEARER")


def _one_secret(kafka: KafkaSettings, key: str, why: str) -> None:
    """Exactly one of `key` and `key`_file is set."""
    given, file = getattr(kafka, key), getattr(kafka, f"{key}_file")
    if given is not None and file is not None:
        raise _error(f"{key}_file", f"set either this or kafka.{key}, not both")
    if given is None and file is None:
        raise _error(key, f"{why} (or {key}_file)")


def _unused(kafka: KafkaSettings, keys: Iterable[str], why: str) -> None:
    """Refuse the first of `keys` that is set although the settings (`why`) do not use it."""
    for key in keys:
        if getattr(kafka, key) is not None:
            raise _error(key, f"set, but {why}")


def _check_tls(kafka: KafkaSettings) -> None:
    protocol = kafka.security_protocol
    if protocol not in TLS_PROTOCOLS:
        _unused(kafka, _FILE_KEYS, f"security_protocol is {protocol} (TLS needs SSL or SASL_SSL)")
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


def _with_secret(kafka: KafkaSettings, key: str) -> KafkaSettings:
    """`kafka` with `key` read from `key`_file, when that is set."""
    file_key = f"{key}_file"
    path = getattr(kafka, file_key)
    if path is None:
        return kafka
    try:
        text = _read(file_key, path).decode()
    except UnicodeDecodeError:
        raise _error(file_key, f"{path} is not UTF-8") from None
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise _error(file_key, f"{path} is empty")
    warn_if_shared(path, key=f"kafka.{file_key}")
    return msgspec.structs.replace(kafka, **{key: Secret(secret)})


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
    log = logging.getLogger(CLIENT_LOGGER)
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
    for host, port in bootstrap_addresses(kafka.bootstrap_servers):
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
    for secret in (kafka.sasl_password, kafka.sasl_oauth_client_secret):
        if secret is not None and secret.reveal():
            cause = cause.replace(secret.reveal(), MASK)
    cause = " ".join(cause.split())
    where = address or kafka.bootstrap_servers
    line = f"cannot connect to Kafka at {where} ({kafka.security_protocol}): {cause}"
    return KafkaConnectError(line, retryable=retryable, cause=cause)


def _describe(exc: BaseException, kafka: KafkaSettings) -> tuple[str, bool]:
    """The cause in words, and whether trying again later could help."""
    ca = f"kafka.ssl_cafile {kafka.ssl_cafile}" if kafka.ssl_cafile else "the system trust store"
    if isinstance(exc, TokenError):
        return str(exc), exc.retryable
    if isinstance(exc, SaslAuthenticationFailed) and kafka.sasl_mechanism == "OAUTHBEARER":
        return (
            f"the broker rejected the token of client {kafka.sasl_oauth_client_id!r} from "
            f"{kafka.sasl_oauth_token_endpoint_url} (its audience, issuer, scope or signature "
            f"is not what the broker expects): {error_reason(exc)}",
            False,
        )
    if isinstance(exc, SaslAuthenticationFailed) and kafka.sasl_mechanism == "AWS_MSK_IAM":
        return (
            f"the broker rejected the AWS MSK IAM token for region {kafka.aws_region} (do the "
            f"AWS credentials' IAM policies allow kafka-cluster:Connect?): {error_reason(exc)}",
            False,
        )
    if isinstance(exc, SaslAuthenticationFailed):
        return (
            f"authentication failed for user {kafka.sasl_username!r} with mechanism "
            f"{kafka.sasl_mechanism} (wrong password or unknown user): {error_reason(exc)}",
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
    if closed_by_peer(exc):
        return _closed_during_set_up(kafka)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running, and is this its address?)", True
    if isinstance(exc, TimeoutError):
        return "no answer in time", True
    if isinstance(exc, OSError):
        return exc.strerror or str(exc), True
    return error_line(exc), True


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


class _HeldBootstrapErrors(logging.Filter):
    """Keeps aiokafka's per-address bootstrap failures back, in `records`."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if is_bootstrap_failure(record):
            self.records.append(record)
            return False
        return True
