"""Starting a Kafka client, and saying in one line why it could not connect.

`start` starts a client and turns a failure to connect into a `KafkaConnectError` whose message
is one line naming the cause; `diagnose` probes the bootstrap addresses to learn that cause.
The client's arguments come from `consumer.kafka.security.client_options`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from consumer.bootstrap import bootstrap_addresses
from consumer.errors import KafkaConnectError
from consumer.kafka.aiokafka_text import CLIENT_LOGGER, closed_by_peer, is_bootstrap_failure
from consumer.kafka.oauth import TokenError
from consumer.kafka.security import TLS_PROTOCOLS, client_options
from consumer.redaction import error_line, error_reason
from consumer.secret import MASK

if TYPE_CHECKING:
    from consumer.settings.config import KafkaSettings

DIAGNOSE_TIMEOUT = 15.0
"""Seconds the probe after a failed start waits per bootstrap address."""

_HOSTNAME_MISMATCH = 62
"""OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH."""


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
    cause, retryable = _cause(exc, kafka)
    for secret in (kafka.sasl_password, kafka.sasl_oauth_client_secret):
        if secret is not None and secret.reveal():
            cause = cause.replace(secret.reveal(), MASK)
    cause = " ".join(cause.split())
    where = address or kafka.bootstrap_servers
    line = f"cannot connect to Kafka at {where} ({kafka.security_protocol}): {cause}"
    return KafkaConnectError(line, retryable=retryable, cause=cause)


def _cause(exc: BaseException, kafka: KafkaSettings) -> tuple[str, bool]:
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
