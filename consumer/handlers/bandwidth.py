"""Talking to Bandwidth's API safely: credentials, and checking a media URL before using it.

Credentials: OAuth2 client credentials (default) or legacy HTTP Basic.

Secrets are read from environment variables or files (`consumer.secret.read_secret`), held in
`Secret` (whose repr hides the value), and only ever leave the process inside an
``Authorization`` header. Error messages name variables, files and HTTP statuses, never values:
they end up in logs and dead-letter headers. The headers built from them and the OAuth tokens
obtained are held in `Secret`s too, so a library's error quoting one is blanked
(`consumer.redaction`).
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import urlsplit

import httpx
import msgspec

from consumer.errors import PermanentFailure, PluginError, RetryLater
from consumer.events import ConferenceRecordingAvailable, RecordingEvent
from consumer.secret import Secret

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from consumer.handler_api import Context

TOKEN_URL: Final = "https://api.bandwidth.com/api/v1/oauth2/token"
API_URL: Final = "https://voice.bandwidth.com/api/v2"
EXPIRY_MARGIN: Final = 60.0
"""Seconds before `expires_in` at which a cached token counts as expired, as in Bandwidth's SDK;
a token living no longer than twice this is kept for half its lifetime instead (`token_ttl`)."""


def _basic(user: Secret, password: Secret) -> Secret:
    pair = f"{user.reveal()}:{password.reveal()}".encode()
    return Secret("Basic " + base64.b64encode(pair).decode("ascii"))


class Authenticator(Protocol):
    """Gives the ``Authorization`` header value for a Bandwidth API request."""

    async def authorization(self, http: httpx.AsyncClient, log: FilteringBoundLogger) -> str: ...

    def rejected(self, authorization: str) -> None:
        """The API answered 401 to `authorization`: do not hand it out again."""


class BasicAuth:
    """Legacy API-user credentials; Bandwidth retires them on 2026-12-02."""

    def __init__(self, username: Secret, password: Secret) -> None:
        self._secrets = (username, password)  # kept alive, so error text is blanked of them
        self._header = _basic(username, password)

    async def authorization(self, http: httpx.AsyncClient, log: FilteringBoundLogger) -> str:
        return self._header.reveal()

    def rejected(self, authorization: str) -> None:
        """Nothing to refresh: the same credentials are tried again on the retry."""


def token_ttl(lifetime: float) -> float:
    """Seconds a token of `lifetime` seconds is used before a new one is fetched.

    The margin alone would make a token of 60 s or less expire at once, and every request would
    fetch one; half the lifetime still leaves the other half for requests already under way.
    """
    return max(lifetime - EXPIRY_MARGIN, lifetime / 2)


class _TokenReply(msgspec.Struct):
    access_token: str
    expires_in: float = 0.0


class OAuth2ClientCredentials:
    """Fetches and caches bearer tokens; one token request at a time however many need one."""

    def __init__(
        self,
        client_id: Secret,
        client_secret: Secret,
        *,
        token_url: str = TOKEN_URL,
        timeout: float = 30.0,
    ) -> None:
        self._secrets = (client_id, client_secret)  # kept alive, so error text is blanked of them
        self._basic = _basic(client_id, client_secret)
        self._token_url = token_url
        self._timeout = timeout
        self._token: Secret | None = None
        self._previous: Secret | None = None
        """The token before `_token`: requests under way may still fail quoting it."""
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def authorization(self, http: httpx.AsyncClient, log: FilteringBoundLogger) -> str:
        async with self._lock:
            # Whoever waited on the lock finds the token its predecessor fetched.
            if self._token is None or time.monotonic() >= self._expires_at:
                token, lifetime = await self._fetch(http)
                self._previous, self._token = self._token or self._previous, token
                self._expires_at = time.monotonic() + token_ttl(lifetime)
                log.debug("oauth2 token obtained", expires_in=lifetime)
            return f"Bearer {self._token.reveal()}"

    def rejected(self, authorization: str) -> None:
        # Only forget the token that was refused, not a newer one another task already fetched.
        if self._token is not None and authorization == f"Bearer {self._token.reveal()}":
            self._previous, self._token = self._token, None

    async def _fetch(self, http: httpx.AsyncClient) -> tuple[Secret, float]:
        try:
            response = await http.post(
                self._token_url,
                data={"grant_type": "client_credentials"},
                headers={"Authorization": self._basic.reveal(), "Accept": "application/json"},
                timeout=self._timeout,
                follow_redirects=False,
            )
        except httpx.TransportError as exc:
            raise RetryLater(f"oauth2 token request failed: {type(exc).__name__}") from exc
        if response.status_code != 200:
            # Bad credentials included: the recording is fine, so it waits for a fixed config.
            raise RetryLater(f"oauth2 token request refused: HTTP {response.status_code}")
        try:
            reply = msgspec.json.decode(response.content, type=_TokenReply)
        except msgspec.DecodeError:
            raise RetryLater("oauth2 token response is not the expected JSON") from None
        return Secret(reply.access_token), reply.expires_in


async def authorized_get(
    auth: Authenticator | None, ctx: Context, url: str, *, accept: str, seconds: float
) -> httpx.Response:
    """The streaming response to GET `url`, `seconds` the request's timeout; after a 401 the
    credentials are renewed and tried once more. The caller closes the response."""
    if auth is None:
        raise RuntimeError("the download handler was used before start()")
    for first_try in (True, False):
        authorization = await auth.authorization(ctx.http, ctx.log)
        request = ctx.http.build_request(
            "GET", url, headers={"Authorization": authorization, "Accept": accept}, timeout=seconds
        )
        response = await ctx.http.send(request, stream=True, follow_redirects=False)
        if response.status_code != 401 or not first_try:
            break
        await response.aclose()
        ctx.log.info("request unauthorized, renewing credentials")
        auth.rejected(authorization)
    return response


# Media URLs. The event's ``mediaUrl`` is only a claim: it must be https, on an allowed host, and
# exactly the media path of this event's own ids, or the message fails permanently before any
# request (and so before any credential) leaves the process.

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def checked_media_url(event: RecordingEvent, allowed: frozenset[tuple[str, int]]) -> str:
    """The URL to request for `event`'s media, or PermanentFailure saying what is wrong."""
    try:
        parts = urlsplit(event.media_url or "")
        host, port = parts.hostname, parts.port
    except ValueError:
        raise PermanentFailure("mediaUrl is not a valid URL") from None
    if parts.scheme != "https":
        raise PermanentFailure("mediaUrl is not an https URL")
    if parts.username is not None or parts.password is not None:
        raise PermanentFailure("mediaUrl carries user info")
    if host is None or (host, port or 443) not in allowed:
        raise PermanentFailure(f"mediaUrl host {host!r} is not an allowed host")
    path = media_path(event)
    if parts.path != path or parts.query or parts.fragment:
        raise PermanentFailure("mediaUrl is not the media path of this event's recording")
    return f"https://{host}{'' if port is None else f':{port}'}{path}"


def media_path(event: RecordingEvent) -> str:
    """``/api/v2/accounts/{accountId}/(calls|conferences)/{id}/recordings/{recordingId}/media``."""
    return f"/api/v2{recording_path(event)}/media"


def recording_path(event: RecordingEvent) -> str:
    """``/accounts/{accountId}/(calls|conferences)/{id}/recordings/{recordingId}``, below the
    API's base: the recording's metadata."""
    if isinstance(event, ConferenceRecordingAvailable):
        subject = f"conferences/{plain_identifier(event.conference_id, 'conferenceId')}"
    else:
        subject = f"calls/{plain_identifier(event.call_id, 'callId')}"
    account = plain_identifier(event.account_id, "accountId")
    recording = plain_identifier(event.recording_id, "recordingId")
    return f"/accounts/{account}/{subject}/recordings/{recording}"


def checked_api_url(url: str, allowed: frozenset[tuple[str, int]], key: str) -> str:
    """`url` without a trailing slash; PluginError naming `key` unless it is https on an
    allowed host, with no user info, query or fragment (credentials go to it)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise PluginError(f"{key}: {url!r} is not a valid URL") from None
    if parts.scheme != "https" or parts.username or parts.password or parts.query or parts.fragment:
        raise PluginError(f"{key}: {url!r} is not a plain https URL")
    if host is None or (host, port or 443) not in allowed:
        raise PluginError(f"{key}: host {host!r} is not one of handlers.download.allowed_hosts")
    return url.rstrip("/")


def plain_identifier(value: str | None, name: str) -> str:
    # Letters, digits, '-' and '_' only: no separators, no dots, so never a path outside the root.
    if value is None or not _IDENTIFIER.fullmatch(value):
        raise PermanentFailure(f"{name} is missing or not a plain identifier")
    return value


def host_and_port(entry: str) -> tuple[str, int]:
    host, _, port = entry.strip().lower().rpartition(":")
    if not host:
        return port, 443
    if not port.isdigit():
        raise PluginError(f"handlers.download.allowed_hosts: bad entry {entry!r}")
    return host, int(port)
