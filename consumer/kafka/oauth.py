"""OAUTHBEARER tokens for the Kafka clients: fetched once, shared, refreshed before they expire.

aiokafka asks its ``sasl_oauth_token_provider`` for a token each time it opens a connection. The
providers here keep the token they got and hand it out until `REFRESH_AFTER` of its lifetime has
passed, so a worker's consumer, producer and admin clients, reconnecting or re-authenticating,
cost the token endpoint one request per token lifetime, not one per connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from urllib.parse import quote

import httpx
import structlog
from aiokafka.abc import AbstractTokenProvider
from aiokafka.conn import AIOKafkaConnection, OAuthAuthenticator
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed

from consumer.redaction import error_line
from consumer.secret import MASK, Secret

REFRESH_AFTER = 0.8
"""Share of a token's lifetime after which the next connection gets a fresh one."""
REQUEST_TIMEOUT = 10.0
"""Seconds one token request may take."""


def _now() -> float:
    """The providers' clock (monotonic); tests of refresh timing replace it."""
    return time.monotonic()


class TokenError(KafkaConnectionError):  # type: ignore[misc]
    """No token could be had; the message is one line naming the endpoint and why, no secret.

    A KafkaError because aiokafka's connect and reconnect loops catch only those: anything else
    raised by a token provider would escape them. `retryable` as in `KafkaConnectError`.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable

    def __str__(self) -> str:
        return self.message


class CachedTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """Caches the token `_fetch` returns; one fetch at a time, whatever the number of callers.

    While a refresh fails but the cached token has not expired yet, that token is still handed
    out (with a warning), so a brief outage of the token source ends no session early.
    """

    def __init__(self) -> None:
        self._token: str | None = None
        self._refresh_at = 0.0
        self._expires_at = 0.0
        self._fetching: asyncio.Task[str] | None = None
        self.fetches = 0
        """Tokens asked for so far, successfully or not."""

    async def _fetch(self) -> tuple[str, float]:
        """A new token and its lifetime in seconds."""
        raise NotImplementedError

    async def token(self) -> str:
        now = _now()
        if self._token is not None and now < self._refresh_at:
            return self._token
        loop = asyncio.get_running_loop()
        fetching = self._fetching
        # A task belongs to one loop; the CLI and tests may run this provider in several.
        if fetching is None or fetching.done() or fetching.get_loop() is not loop:
            fetching = self._fetching = loop.create_task(self._refresh())
            # Its callers may all be cancelled: the failure is theirs to see, not the loop's.
            fetching.add_done_callback(lambda task: task.cancelled() or task.exception())
        return await asyncio.shield(fetching)

    async def _refresh(self) -> str:
        self.fetches += 1
        started = _now()
        try:
            token, lifetime = await self._fetch()
        except TokenError as exc:
            if self._token is None or _now() >= self._expires_at:
                raise
            structlog.get_logger("consumer.oauth").warning(
                "token refresh failed; using the current token until it expires",
                error=str(exc),
                expires_in=round(self._expires_at - _now(), 1),
            )
            return self._token
        self._token = token
        self._refresh_at = started + lifetime * REFRESH_AFTER
        self._expires_at = started + lifetime
        return token


class ClientCredentialsTokens(CachedTokenProvider):
    """Access tokens from an OAuth 2.0 token endpoint by the client-credentials grant.

    The client authenticates with HTTP Basic (client id and secret form-encoded first, as
    RFC 6749 section 2.3.1 says), as Kafka's own Java client does.
    """

    def __init__(self, url: str, client_id: str, secret: Secret, scope: str | None) -> None:
        super().__init__()
        self.url = url
        self._client_id = client_id
        self._secret = secret
        self._scope = scope

    async def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        auth = httpx.BasicAuth(quote(self._client_id, safe=""), quote(self._secret.reveal()))
        try:
            async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http:
                response = await http.post(self.url, data=form, auth=auth)
        except httpx.HTTPError as exc:
            raise self._error(f"no answer ({error_line(exc)})", retryable=True) from None
        if response.status_code != 200:
            # 4xx: these credentials or this request will not work on a second try; 5xx might.
            retryable = response.status_code >= 500 or response.status_code == 429
            answer = f"HTTP {response.status_code}{_oauth_error(response)}"
            raise self._error(answer, retryable=retryable)
        try:
            body = response.json()
            token = body["access_token"]
            if not isinstance(token, str) or not token:
                raise TypeError("access_token is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            raise self._error(f"no access_token in its answer ({exc})", retryable=True) from None
        lifetime = _lifetime(body.get("expires_in"), token)
        if lifetime is None:
            why = "its answer gives neither expires_in nor a JWT with an exp in the future"
            raise self._error(why, retryable=False)
        return token, lifetime

    def _error(self, why: str, *, retryable: bool) -> TokenError:
        line = f"OAuth token endpoint {self.url} (client {self._client_id!r}): {why}"
        return TokenError(line.replace(self._secret.reveal(), MASK), retryable=retryable)


def _oauth_error(response: httpx.Response) -> str:
    """`` invalid_client: description`` from an RFC 6749 error answer, else a short text."""
    try:
        body = response.json()
    except ValueError:
        text = " ".join(response.text.split())[:200]
        return f" {text}" if text else ""
    if not isinstance(body, dict) or "error" not in body:
        return ""
    described = body.get("error_description")
    return f" {body['error']}" + (f": {described}" if described else "")


def _lifetime(expires_in: object, token: str) -> float | None:
    """Seconds the token lasts: ``expires_in``, else what the JWT's ``exp`` claim leaves."""
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        return float(expires_in)
    exp = _jwt_claims(token).get("exp")
    if isinstance(exp, int | float) and exp > time.time():
        return float(exp) - time.time()
    return None


def _jwt_claims(token: str) -> dict[str, object]:
    """A JWT's payload, unverified (the broker verifies it); empty for an opaque token."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


class _ChallengeAnswering(OAuthAuthenticator):  # type: ignore[misc]
    """aiokafka's OAUTHBEARER exchange, plus the failure path of RFC 7628 section 3.2.2.

    A broker rejects a token with an error challenge, not an error code; aiokafka (0.14) takes
    any challenge for success, so a rejected token looked like a connection whose first request
    got garbage back. Answering ``\x01`` makes the broker fail the exchange properly, with
    SaslAuthenticationFailed.
    """

    _challenge: bytes | None = None

    async def step(self, payload: bytes | None) -> tuple[bytes, bool] | None:
        if self._challenge is not None:
            # The broker ought to have failed the exchange after our \x01; fail it here.
            raise SaslAuthenticationFailed(self._challenge.decode(errors="replace"))
        if self._token_sent and payload:
            self._challenge = payload
            return b"\x01", True
        result: tuple[bytes, bool] | None = await super().step(payload)
        return result


def _challenge_answering(conn: AIOKafkaConnection) -> OAuthAuthenticator:
    return _ChallengeAnswering(sasl_oauth_token_provider=conn._sasl_oauth_token_provider)


def answer_error_challenges() -> None:
    """Make aiokafka's connections answer OAUTHBEARER error challenges (idempotent)."""
    AIOKafkaConnection.authenticator_oauth = _challenge_answering
