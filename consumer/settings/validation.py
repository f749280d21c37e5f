"""Settings that parse but cannot work: empty names, counts and intervals that must be positive,
ranges Kafka enforces, and a rebalance hand-over the broker would not wait for.

Each problem is reported as its dotted key and why, so a bad deploy fails at start-up (exit 2)
instead of hanging, spinning or dead-lettering everything later.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from consumer.bootstrap import bootstrap_addresses
from consumer.settings.handover import longest_handover
from consumer.settings.listen import listen_address

if TYPE_CHECKING:
    from consumer.settings.config import RetryOverride, RetryPolicy, Settings

# Kafka's own rules for topic names (kafka.common.internals.Topic).
_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]+")
_TOPIC_MAX_LENGTH = 249
# The broker's defaults for group.min.session.timeout.ms and group.max.session.timeout.ms.
SESSION_TIMEOUT_RANGE_MS = (6_000, 1_800_000)
_INT32_MAX = 2**31 - 1
_INT16_MAX = 2**15 - 1


def invalid_settings(settings: Settings) -> Iterator[tuple[str, str]]:
    """Every (dotted key, reason) of `settings` that cannot work, in file order."""
    yield from _kafka(settings)
    yield from _engine(settings)
    yield from _retry("retry", settings.retry)
    for name, override in settings.retry.handlers.items():
        yield from _retry(f"retry.handlers.{name}", override)
    yield from _dead_letter(settings)
    yield from _observability(settings)
    yield from _ingress(settings)


def _kafka(settings: Settings) -> Iterator[tuple[str, str]]:
    kafka = settings.kafka
    try:
        if not bootstrap_addresses(kafka.bootstrap_servers):
            yield "kafka.bootstrap_servers", "must name at least one host:port"
    except ValueError as exc:
        yield "kafka.bootstrap_servers", f"{exc} (expected comma-separated host:port)"
    yield from _topic_name("kafka.topic", kafka.topic)
    if not kafka.group_id.strip():
        yield "kafka.group_id", "must not be empty: offsets are committed under the group"
    low, high = SESSION_TIMEOUT_RANGE_MS
    if not low <= kafka.session_timeout_ms <= high:
        yield (
            "kafka.session_timeout_ms",
            f"must be between {low} and {high} (the broker's group.min/max.session.timeout.ms "
            f"defaults), got {kafka.session_timeout_ms}",
        )
    if kafka.heartbeat_interval_ms <= 0:
        yield "kafka.heartbeat_interval_ms", _positive(kafka.heartbeat_interval_ms)
    elif kafka.heartbeat_interval_ms >= kafka.session_timeout_ms:
        yield (
            "kafka.heartbeat_interval_ms",
            f"must be lower than kafka.session_timeout_ms ({kafka.session_timeout_ms}), "
            "or the member is evicted between heartbeats",
        )
    if not 0 < kafka.max_poll_interval_ms <= _INT32_MAX:
        yield "kafka.max_poll_interval_ms", f"must be between 1 and {_INT32_MAX}"


def _engine(settings: Settings) -> Iterator[tuple[str, str]]:
    engine = settings.engine
    counts = {
        "max_in_flight": (engine.max_in_flight, "no handler could ever run"),
        "max_buffered": (engine.max_buffered, "nothing could ever be fetched"),
        "fetch_max_records": (engine.fetch_max_records, "nothing could ever be fetched"),
        "commit_every": (engine.commit_every, "it counts finished messages between commits"),
    }
    for key, (value, why) in counts.items():
        if value <= 0:
            yield f"engine.{key}", f"{_positive(value)}: {why}"
    if engine.dedupe_window < 0:
        yield "engine.dedupe_window", f"must be 0 (off) or more, got {engine.dedupe_window}"
    if _not_positive(engine.shutdown_grace):
        yield (
            "engine.shutdown_grace",
            f"{_positive(engine.shutdown_grace)}: running handlers need time to finish",
        )
    elif longest_handover(engine.shutdown_grace) * 1000 > settings.kafka.max_poll_interval_ms:
        wait = longest_handover(engine.shutdown_grace)
        yield (
            "engine.shutdown_grace",
            f"a rebalance can wait up to {wait:g} s for running handlers (the grace plus "
            f"{wait - engine.shutdown_grace:g} s to cancel and commit), longer than the "
            "rebalance timeout the broker allows, kafka.max_poll_interval_ms "
            f"({settings.kafka.max_poll_interval_ms} ms): lower engine.shutdown_grace or "
            "raise kafka.max_poll_interval_ms",
        )
    if _not_positive(engine.commit_interval):
        yield (
            "engine.commit_interval",
            f"{_positive(engine.commit_interval)}: the commit loop would never wait",
        )


def _retry(section: str, policy: RetryPolicy | RetryOverride) -> Iterator[tuple[str, str]]:
    # Overrides leave unset keys as msgspec.UNSET, which is neither int nor float.
    attempts, initial, ceiling, timeout = (
        policy.max_attempts,
        policy.initial_delay,
        policy.max_delay,
        policy.timeout,
    )
    if isinstance(attempts, int) and attempts <= 0:
        yield f"{section}.max_attempts", f"{_positive(attempts)}: the first attempt counts"
    for key, value in (("initial_delay", initial), ("max_delay", ceiling)):
        if isinstance(value, int | float) and _not_positive(value):
            yield f"{section}.{key}", f"{_positive(value)}: retries would come back-to-back"
    if isinstance(timeout, int | float) and _not_positive(timeout):
        yield (
            f"{section}.timeout",
            f"{_positive(timeout)} (or unset for no limit): every attempt would time out",
        )


def _dead_letter(settings: Settings) -> Iterator[tuple[str, str]]:
    dead_letter = settings.dead_letter
    if dead_letter.topic is not None:
        yield from _topic_name("dead_letter.topic", dead_letter.topic)
        if dead_letter.topic == settings.kafka.topic:
            yield "dead_letter.topic", "must differ from kafka.topic: dead letters would loop"
    if dead_letter.error_max_bytes <= 0:
        yield "dead_letter.error_max_bytes", _positive(dead_letter.error_max_bytes)
    size = dead_letter.max_request_size
    if size is not None and not 1_024 <= size <= _INT32_MAX:
        yield "dead_letter.max_request_size", f"must be between 1024 and {_INT32_MAX} bytes"
    replicas, min_insync = dead_letter.replication_factor, dead_letter.min_insync_replicas
    if replicas is not None and not 1 <= replicas <= _INT16_MAX:
        yield "dead_letter.replication_factor", f"must be between 1 and {_INT16_MAX} (or unset)"
    if min_insync is not None and min_insync < 1:
        yield "dead_letter.min_insync_replicas", _positive(min_insync)
    elif min_insync is not None and replicas is not None and min_insync > replicas:
        why = f"{min_insync} exceeds dead_letter.replication_factor {replicas}: no write fits"
        yield "dead_letter.min_insync_replicas", why


def _topic_name(key: str, name: str) -> Iterator[tuple[str, str]]:
    if not name:
        yield key, "must not be empty"
    elif name in (".", "..") or not _TOPIC_NAME.fullmatch(name):
        yield key, f"{name!r} is not a legal Kafka topic name (letters, digits, '.', '_', '-')"
    elif len(name) > _TOPIC_MAX_LENGTH:
        yield key, f"must be at most {_TOPIC_MAX_LENGTH} characters (Kafka's limit)"


def _observability(settings: Settings) -> Iterator[tuple[str, str]]:
    observability = settings.observability
    yield from _listen("observability.listen", observability.listen)
    for key in ("stall_timeout", "loop_block_timeout"):
        value = getattr(observability, key)
        if _not_positive(value):
            yield f"observability.{key}", _positive(value)
    interval = observability.stats_interval
    if not (math.isfinite(interval) and interval >= 0):
        yield "observability.stats_interval", f"must be 0 (none) or more, got {interval}"


def _ingress(settings: Settings) -> Iterator[tuple[str, str]]:
    ingress = settings.ingress
    if not ingress.listen:
        yield "ingress.listen", "must not be empty: it is the port Bandwidth posts to"
    yield from _listen("ingress.listen", ingress.listen)
    if not ingress.path.startswith("/"):
        yield "ingress.path", f"must start with '/', got {ingress.path!r}"
    elif any(c in ingress.path for c in "?# "):
        yield "ingress.path", f"a path only (no '?', '#' or space), got {ingress.path!r}"
    positive = {
        "max_body_bytes": ingress.max_body_bytes,
        "spool_max_bytes": ingress.spool_max_bytes,
        "ack_timeout": ingress.ack_timeout,
        "max_connections": ingress.max_connections,
        "header_timeout": ingress.header_timeout,
        "body_timeout": ingress.body_timeout,
        "keep_alive_timeout": ingress.keep_alive_timeout,
        "shutdown_grace": ingress.shutdown_grace,
    }
    for key, value in positive.items():
        if _not_positive(value):
            yield f"ingress.{key}", _positive(value)


def _listen(key: str, listen: str) -> Iterator[tuple[str, str]]:
    try:
        listen_address(listen)
    except ValueError as exc:
        yield key, str(exc)


def _not_positive(value: float) -> bool:
    # NaN and infinity parse as TOML floats and pass `value <= 0`; no timer works with either.
    return not (math.isfinite(value) and value > 0)


def _positive(value: float) -> str:
    return f"must be greater than 0, got {value}"
