"""Bandwidth's Basic credentials: read once at start-up, compared in constant time.

The username and password are what ``<StartRecording username=... password=...>`` (or the
application's callback credentials) give Bandwidth; it sends them as HTTP Basic on every callback.
"""

from __future__ import annotations

import base64
import hmac

from consumer.errors import ConfigError
from consumer.secret import read_secret
from consumer.settings.config import IngressSettings


class Credentials:
    """The expected username and password, as bytes; `accepts` checks an Authorization header."""

    __slots__ = ("_header", "_password", "_username")

    def __init__(self, username: str, password: str) -> None:
        self._username = username.encode()
        self._password = password.encode()
        self._header = b"Basic " + base64.b64encode(self._username + b":" + self._password)
        """The header Bandwidth sends on every callback, compared whole before any decoding."""

    def __repr__(self) -> str:
        return "Credentials(***)"

    def accepts(self, authorization: str | None) -> bool:
        if authorization is None:
            return False
        if hmac.compare_digest(authorization.encode("utf-8", "surrogateescape"), self._header):
            return True
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except ValueError:  # binascii.Error, or a token that is not ASCII
            return False
        username, colon, password = decoded.partition(b":")
        if not colon:
            return False
        # Both compared whatever the first gives, so the time taken tells nothing either way.
        username_ok = hmac.compare_digest(username, self._username)
        password_ok = hmac.compare_digest(password, self._password)
        return username_ok and password_ok


def credentials(ingress: IngressSettings) -> Credentials | None:
    """The configured credentials, or None with ``allow_anonymous``; ConfigError naming the key
    that is missing or conflicting."""
    if ingress.password is not None and ingress.password_file is not None:
        raise ConfigError(
            "ingress.password_file: set either this or ingress.password, not both",
            "ingress.password_file",
        )
    if ingress.username is None and ingress.password is None and ingress.password_file is None:
        if ingress.allow_anonymous:
            return None
        raise ConfigError(
            "ingress.username: required (with ingress.password or ingress.password_file): the "
            "Basic credentials Bandwidth sends; set ingress.allow_anonymous = true to take "
            "callbacks without them",
            "ingress.username",
        )
    if not ingress.username:
        raise ConfigError("ingress.username: required with a password", "ingress.username")
    if ingress.password_file is not None:
        try:
            password = read_secret("", ingress.password_file, key="ingress.password_file").reveal()
        except ConfigError as exc:
            raise ConfigError(f"ingress.password_file: {exc}", "ingress.password_file") from None
    elif ingress.password is not None and ingress.password.reveal():
        password = ingress.password.reveal()
    else:
        raise ConfigError(
            "ingress.password: required with ingress.username (or ingress.password_file)",
            "ingress.password",
        )
    if ":" in ingress.username:
        raise ConfigError(
            "ingress.username: must not contain ':' (HTTP Basic separates it from the password)",
            "ingress.username",
        )
    return Credentials(ingress.username, password)
