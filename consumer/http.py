"""HTTP for handlers: the worker's shared client, and reading a Retry-After header."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import httpx

TIMEOUT: Final = 5.0
"""Seconds for each of connect, read, write and waiting for a pooled connection."""
MAX_CONNECTIONS: Final = 100
MAX_KEEPALIVE: Final = 20


def shared_client() -> httpx.AsyncClient:
    """The one client the worker gives every handler as ``ctx.http``; httpx's defaults, stated.

    5 s timeouts, redirects not followed, no headers beyond httpx's own (``User-Agent:
    python-httpx/<version>``, ``Accept: */*``, ``Accept-Encoding``), HTTP/1.1, system CA
    bundle (certifi), proxies from the environment, at most 100 connections of which 20 are
    kept alive. Handlers pass per-request ``timeout=``, ``follow_redirects=`` or ``headers=``.
    """
    import httpx  # here: the worker needs it, `import consumer` alone does not

    return httpx.AsyncClient(
        timeout=httpx.Timeout(TIMEOUT),
        follow_redirects=False,
        limits=httpx.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE
        ),
    )


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    None when the header is absent or unreadable (let the retry policy decide); a date in the
    past is 0. Pass it on: ``raise RetryLater(..., delay=retry_after(response.headers.get(
    "retry-after")))``.
    """
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 850 and asctime dates carry no zone: HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
