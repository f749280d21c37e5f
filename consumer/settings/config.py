"""Settings: a TOML file, overridden by environment variables, validated into Structs at start-up.

Environment overrides: ``KAFKA_BOOTSTRAP_SERVERS`` sets ``kafka.bootstrap_servers`` (unless
``RECORDING_CONSUMER__KAFKA__BOOTSTRAP_SERVERS`` is also set), and any key can be set as
``RECORDING_CONSUMER__<SECTION>__<KEY>`` (``RECORDING_CONSUMER__KAFKA__TOPIC``,
``RECORDING_CONSUMER__ROUTES__COMPLETE='["log", "download"]'``). A value is read as a TOML value
when it parses as one (numbers, booleans, arrays) and as a plain string otherwise; a `Secret`
setting or handler option is taken verbatim.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from consumer.backoff import Backoff
from consumer.errors import ConfigError
from consumer.msgspec_errors import located, missing_field, reason_and_path, unknown_field
from consumer.secret import EnvText, Secret, decode_secret, is_secret
from consumer.settings.validation import invalid_settings

ENV_PREFIX = "RECORDING_CONSUMER__"
ENV_ALIASES = {"KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers")}
DEFAULT_CONFIG = Path("config/consumer.toml")


class KafkaSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    bootstrap_servers: str = "127.0.0.1:9092"
    startup_timeout: float = 60.0
    """Seconds to keep trying to reach the broker at start-up before exiting 1."""
    topic: str = "bandwidth.recordings"
    group_id: str = "recording-consumer"
    client_id: str = "recording-consumer"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: (
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "AWS_MSK_IAM"] | None
    ) = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    sasl_password_file: str | None = None
    """Read once at start-up (trailing newline dropped): for Docker and Kubernetes secrets."""
    sasl_oauth_token_endpoint_url: str | None = None
    """OAUTHBEARER: the OAuth 2.0 token endpoint, asked by the client-credentials grant."""
    sasl_oauth_client_id: str | None = None
    sasl_oauth_client_secret: Secret | None = None
    sasl_oauth_client_secret_file: str | None = None
    """Read once at start-up, as ``sasl_password_file``."""
    sasl_oauth_scope: str | None = None
    """Sent as the token request's ``scope`` when set."""
    aws_region: str | None = None
    """AWS_MSK_IAM: the cluster's region; unset: ``$AWS_REGION``."""
    ssl_cafile: str | None = None
    """CA bundle (PEM) for the brokers' certificates; unset: the system trust store."""
    ssl_certfile: str | None = None
    """Client certificate (PEM) for mutual TLS; may hold the key too."""
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed"
    """read_committed: messages of aborted (or still open) transactions are never handed out."""
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    """Codec of the batches the project produces (dead letters, publish, dlq replay, produce)."""

    @property
    def producer_compression(self) -> str | None:
        """`compression_type` as aiokafka's producers take it."""
        return None if self.compression_type == "none" else self.compression_type


class EngineSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ordering: Literal["key", "partition"] = "key"
    """key: one at a time per Kafka key (recordingId when the key is empty); partition: strict."""
    max_in_flight: int = 100
    """Handlers running at once, across all keys and partitions."""
    max_buffered: int = 2_000
    """Fetched but unfinished messages at which fetching pauses (until half have finished)."""
    shutdown_grace: float = 30.0
    """Seconds running handlers get to finish after SIGTERM before they are cancelled; also
    how long a rebalance waits for a revoked partition's running handlers."""
    dedupe_window: int = 10_000
    """Recent events handled successfully, remembered by their exact bytes, to drop Bandwidth's
    repeats (counted as the ``duplicate`` outcome); 0 turns duplicate suppression off."""
    fetch_max_records: int = 500
    commit_interval: float = 1.0
    """Seconds between periodic commits."""
    commit_every: int = 1_000
    """Finished messages that trigger a commit before the interval is up."""


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_attempts: int = 5
    """Attempts in all, the first included; then the message is dead-lettered."""
    initial_delay: float = 0.5
    max_delay: float = 60.0
    """Backoff is exponential with full jitter, capped at this many seconds."""
    timeout: float | None = None
    """Seconds one attempt may take; running over counts as a failure."""

    @property
    def backoff(self) -> Backoff:
        """The delays between attempts: from `initial_delay`, doubling, full jitter."""
        return Backoff(self.initial_delay, self.max_delay, "full")


class RetryOverride(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_attempts: int | UnsetType = UNSET
    initial_delay: float | UnsetType = UNSET
    max_delay: float | UnsetType = UNSET
    timeout: float | UnsetType | None = UNSET


class RetrySettings(RetryPolicy, frozen=True, kw_only=True, forbid_unknown_fields=True):
    handlers: dict[str, RetryOverride] = msgspec.field(default_factory=dict)
    """Per-handler changes to the policy above; keys not given keep the defaults."""

    def policy_for(self, handler: str) -> RetryPolicy:
        base = RetryPolicy(
            max_attempts=self.max_attempts,
            initial_delay=self.initial_delay,
            max_delay=self.max_delay,
            timeout=self.timeout,
        )
        override = self.handlers.get(handler)
        if override is None:
            return base
        changes = {k: v for k, v in msgspec.structs.asdict(override).items() if v is not UNSET}
        return msgspec.structs.replace(base, **changes)


class DeadLetterSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    topic: str | None = None
    """Defaults to ``<kafka.topic>.dlq``; created if missing."""
    error_max_bytes: int = 1_000
    """Error messages are truncated to this size in dead-letter headers."""
    max_request_size: int | None = None
    """Bytes one produce request may take; unset: the source topic's ``max.message.bytes`` (read
    at start-up) plus room for the dead-letter headers. A message that still does not fit is
    dead-lettered as a reference record (empty value) pointing at its source offset."""
    on_unwritable: Literal["skip", "stall"] = "skip"
    """When not even a bare reference record (only ``dlq.*`` headers) fits the dead-letter topic:
    skip logs an error naming the source topic, partition and offset and goes on; stall retries
    until the topic takes it, committing nothing past it."""
    replication_factor: int | None = None
    """Replicas of the dead-letter topic when the worker creates it; unset: the cluster's
    ``default.replication.factor``."""
    min_insync_replicas: int | None = None
    """``min.insync.replicas`` of the dead-letter topic when the worker creates it; unset: the
    cluster's default."""


class EventSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    other_event_types: Literal["skip", "warn"] = "skip"
    """Other Bandwidth callbacks (not recordings): skip at debug level, or with a warning."""
    unknown_event_types: Literal["skip", "warn"] = "warn"
    envelope: Literal["raw", "cloudevents", "auto"] = "raw"
    """raw: the value is Bandwidth's callback; cloudevents: a CloudEvent (structured or binary
    mode, told apart per message); auto: a CloudEvent when its headers say so, else raw."""


class PluginSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    allow: list[str] | None = None
    """Handlers that may load, by name, installed (entry points) and `paths` alike; unset lets
    every one load."""
    paths: dict[str, str] = msgspec.field(default_factory=dict)
    """Handler name to ``module:attribute``, for handlers that are not installed as packages."""


class LoggingSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: Literal["auto", "json", "console"] = "auto"
    """auto: console when stdout is a terminal, JSON lines otherwise."""
    level: Literal["debug", "info", "warning", "error"] = "info"


class ObservabilitySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    listen: str = ""
    """``host:port`` serving /metrics, /healthz and /readyz; empty (the default) turns it off.
    The container image sets ``0.0.0.0:9464``."""
    stall_timeout: float = 600.0
    """Seconds a partition with lag may commit nothing before /healthz reports it stalled."""
    loop_block_timeout: float = 5.0
    """Seconds the event loop may go without running before /healthz reports it blocked."""
    stats_interval: float = 60.0
    """Seconds between stats lines in the log; 0 turns them off."""


class IngressSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`recording-consumer ingest`: Bandwidth's HTTP callbacks to ``kafka.topic``."""

    listen: str = "127.0.0.1:8080"
    """``host:port`` taking callbacks; the container image sets ``0.0.0.0:8080``."""
    path: str = "/callbacks"
    """The one path that takes callbacks (POST only)."""
    username: str | None = None
    password: Secret | None = None
    password_file: str | None = None
    """Read once at start-up, leading and trailing whitespace stripped, instead of `password`."""
    allow_anonymous: bool = False
    """Take callbacks without Basic credentials; without this, missing credentials stop start-up."""
    max_body_bytes: int = 65_536
    spool_dir: str = "spool"
    spool_max_bytes: int = 1 << 30
    ack_timeout: float = 2.0
    """Seconds to wait for Kafka's ack before the callback is spooled instead."""
    max_connections: int = 512
    """Open connections at most; beyond it the longest-waiting idle one is closed for a new one."""
    header_timeout: float = 10.0
    """Seconds from a connection's (or its next request's) first byte to the end of its headers."""
    body_timeout: float = 10.0
    """Seconds to read a request's body."""
    keep_alive_timeout: float = 75.0
    """Seconds an idle connection stays open: longer than the 60 s idle timeout of common load
    balancers and TLS terminators, so they, not the ingress, close a reused connection."""
    shutdown_grace: float = 10.0
    """Seconds after SIGTERM for requests in flight and Kafka's last acks."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    engine: EngineSettings = msgspec.field(default_factory=EngineSettings)
    events: EventSettings = msgspec.field(default_factory=EventSettings)
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
    dead_letter: DeadLetterSettings = msgspec.field(default_factory=DeadLetterSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    observability: ObservabilitySettings = msgspec.field(default_factory=ObservabilitySettings)
    ingress: IngressSettings = msgspec.field(default_factory=IngressSettings)
    routes: dict[str, list[str]] = msgspec.field(default_factory=lambda: {"default": ["log"]})
    """Status to the ordered handler names; ``default`` takes statuses with no entry."""
    handlers: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    """Options per handler name, validated by the handler's own Struct."""
    plugins: PluginSettings = msgspec.field(default_factory=lambda: PluginSettings())


def _secret_keys() -> frozenset[tuple[str, str]]:
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    return frozenset(
        (section.encode_name, f.encode_name)
        for section in info.fields
        if isinstance(section.type, msgspec.inspect.StructType)
        for f in section.type.fields
        if is_secret(f.type)
    )


VERBATIM_ENV_KEYS = _secret_keys() | {("ingress", "username")}
"""Every setting typed `Secret` (``kafka.sasl_password``), and the ingress's user name: taken as
the plain string given, never as TOML, so a secret never becomes a number or loses its quotes.
Handler options stay
`EnvText` until their handler's types say which are secret (`consumer.plugins.discovery`)."""


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read `path` (or ``config/consumer.toml`` when it exists), apply the environment, validate.

    The ``[kafka]`` security keys are checked, and secret files read, by
    `consumer.kafka.security.checked`, which every entry point runs next."""
    raw: dict[str, Any] = {}
    source = settings_file(path)
    if source is not None:
        raw = _read_toml(source)
    environ = environ if environ is not None else {}
    from_env = _apply_environment(raw, environ)
    try:
        _check_tables(raw)
        settings = msgspec.convert(raw, Settings, strict=True, dec_hook=decode_secret)
    except msgspec.ValidationError as exc:
        raise _config_error(exc, from_env) from None
    for key, reason in invalid_settings(settings):
        raise _key_error(key, reason, from_env)
    return settings


def settings_file(path: Path | None) -> Path | None:
    """The file `load_settings` reads: `path`, else ``config/consumer.toml`` in the working
    directory when `path` is None and that file exists, else none.

    Settings name code to import (``[plugins] paths``), so that default trusts the working
    directory: run the worker with ``--config`` anywhere you would not run its code.
    """
    if path is not None:
        return path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def _check_tables(raw: dict[str, Any]) -> None:
    """Validate free-keyed tables entry by entry: msgspec's error paths do not name dict keys."""
    tables: tuple[tuple[str, Any], ...] = (
        ("routes", list[str]),
        ("handlers", dict[str, Any]),
        ("plugins.paths", str),
    )
    for section, value_type in tables:
        table: Any = raw
        for part in section.split("."):
            table = table.get(part) if isinstance(table, dict) else None
        if isinstance(table, dict):
            for key, value in table.items():
                try:
                    msgspec.convert(value, value_type, strict=True)
                except msgspec.ValidationError as exc:
                    reason, _ = reason_and_path(exc)
                    raise located(reason, f"$.{section}.{key}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Merge overrides into `raw`; returns dotted key -> the variable that set it, for errors."""
    applied: dict[str, str] = {}
    # The alias goes first, so the key's own variable wins when both are set.
    for name, value in sorted(environ.items(), key=lambda item: item[0] not in ENV_ALIASES):
        if name in ENV_ALIASES:
            keys: tuple[str, ...] = ENV_ALIASES[name]
        elif name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            keys = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
            if not all(keys):
                raise ConfigError(f"environment variable {name} does not name a settings key")
        else:
            continue
        node = raw
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                dotted = ".".join(keys)
                raise ConfigError(f"{dotted}: {name} sets a key inside a non-table value", dotted)
            node = child
        text = EnvText(value)
        if keys in VERBATIM_ENV_KEYS:
            node[keys[-1]] = value
        elif keys[0] == "handlers" and len(keys) > 2:
            node[keys[-1]] = text
        else:
            node[keys[-1]] = text.parsed()
        applied[".".join(keys)] = name
    return applied


def validation_key(exc: msgspec.ValidationError) -> tuple[str, str]:
    """The dotted key a msgspec validation error is about, and its reason."""
    reason, at = reason_and_path(exc)
    path = (at or "$")[1:]
    unknown = unknown_field(reason)
    if unknown is not None:
        path, reason = f"{path}.{unknown}", "unknown key"
    missing = missing_field(reason)
    if missing is not None:
        path, reason = f"{path}.{missing}", "required key is missing"
    return re.sub(r"\[(\d+)\]", r".\1", path).strip("."), reason


def _config_error(exc: msgspec.ValidationError, from_env: Mapping[str, str]) -> ConfigError:
    key, reason = validation_key(exc)
    return _key_error(key or "(top level)", reason, from_env)


def _key_error(key: str, reason: str, from_env: Mapping[str, str]) -> ConfigError:
    source = from_env.get(key) or next(
        (var for k, var in from_env.items() if key.startswith(k + ".")), None
    )
    where = f" (set by environment variable {source})" if source else ""
    return ConfigError(f"{key}: {reason}{where}", key)
