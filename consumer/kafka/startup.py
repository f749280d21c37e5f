"""Reaching Kafka at start-up: retry with backoff for ``kafka.startup_timeout``, then one error.

A broker that is still starting (or a network not up yet) is normal in a deployment; a traceback
and unclosed clients are not how to say it is not there. `port_refusal`, the plain TCP check it
starts with, is the broker watcher's too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from consumer.backoff import Backoff
from consumer.bootstrap import bootstrap_addresses
from consumer.errors import KafkaConnectError
from consumer.kafka import connection
from consumer.settings.config import KafkaSettings

BACKOFF = Backoff(0.5, 5.0, "none")
"""Between attempts to reach Kafka at start-up."""
REPORT_EVERY = 5.0
"""Seconds between two "not reachable yet" reports: one line per attempt would flood the log."""
ATTEMPT_TIMEOUT = 10.0

OnRetry = Callable[[int, str, float], None]
"""Told (attempt, error, seconds left) while retrying, at most every `REPORT_EVERY` seconds."""


async def wait_for_kafka(kafka: KafkaSettings, on_retry: OnRetry) -> None:
    """Return once a broker answers; raise KafkaConnectError when `startup_timeout` runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + kafka.startup_timeout
    attempt, reported = 0, float("-inf")
    while True:
        attempt += 1
        left = deadline - loop.time()
        error = await _attempt(kafka, seconds=max(0.5, min(ATTEMPT_TIMEOUT, left)))
        if error is None:
            return
        left = deadline - loop.time()
        if left <= 0:
            raise KafkaConnectError(
                f"cannot reach Kafka at {kafka.bootstrap_servers}: {error}", retryable=True
            )
        if loop.time() - reported >= REPORT_EVERY:
            reported = loop.time()
            on_retry(attempt, error, left)
        await asyncio.sleep(min(BACKOFF.delay(attempt), left))


async def _attempt(kafka: KafkaSettings, *, seconds: float) -> str | None:
    """Why no broker answered, or None if one did; raises what retrying cannot fix.

    Reaching a TCP port first gives the real reason (refused, unknown host), which the Kafka
    client only writes to its log; then a client connection as the worker's (TLS, SASL).
    """
    try:
        async with asyncio.timeout(seconds):
            reason = await port_refusal(kafka.bootstrap_servers)
            if reason is not None:
                return reason
            failure = await connection.diagnose(kafka)
    except TimeoutError:
        return f"no answer within {seconds:.0f} s"
    if failure is None:
        return None
    if not failure.retryable:
        raise failure
    return failure.cause


async def port_refusal(bootstrap: str) -> str | None:
    """None once a bootstrap server accepts a TCP connection, else why the last one did not."""
    try:
        addresses = bootstrap_addresses(bootstrap)
    except ValueError as exc:
        return str(exc)
    reason = "no bootstrap servers"
    for host, port in addresses:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            reason = str(exc)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return None
    return reason
