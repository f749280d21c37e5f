"""The ``[kafka]`` security keys: checked together at start-up, and turned into the arguments
every aiokafka client of the project is built with.

`checked` is what every entry point runs on the settings it loaded (the command line, the
benchmarks, the tests' helpers): it validates the keys as a whole, naming the key at fault, and
reads the secret files. `client_options` is the one place those keys become aiokafka arguments.
"""

from __future__ import annotations

import importlib.util
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from consumer.errors import ConfigError
from consumer.kafka.oauth import (
    CachedTokenProvider,
    ClientCredentialsTokens,
    answer_error_challenges,
)
from consumer.secret import Secret, warn_if_shared
from consumer.settings.config import KafkaSettings, Settings

SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
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
        assert kafka.sasl_password is not None, "checked resolves the password"
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
            from consumer.kafka.msk_iam import MskIamTokens

            assert kafka.aws_region, "checked resolves the region"
            provider = MskIamTokens(kafka.aws_region)
        else:
            assert url, "checked requires it"
            assert client_id, "checked requires it"
            assert secret, "checked requires it"
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


def checked(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """`settings` (from `load_settings`) with the security keys checked and the secret files read,
    as `check_security` does; run once, right after loading, before any client is built."""
    return msgspec.structs.replace(settings, kafka=check_security(settings.kafka, environ))


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
