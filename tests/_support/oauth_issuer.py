"""A small OAuth 2.0 identity provider on loopback: a JWKS document and a token endpoint.

Mints RS256 JWTs by the client-credentials grant with a key made at start. Registered clients
each have a secret, the audience their tokens carry and a token lifetime; every token request
is counted per client. Served from a thread: the broker fetches the JWKS while tests block in
`LocalBroker.start`, outside any event loop.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

AUDIENCE = "recording-consumer-kafka"
ISSUER = "http://127.0.0.1/devkit-issuer"


@dataclass(frozen=True)
class Client:
    secret: str
    audience: str = AUDIENCE
    lifetime: int = 3600


class Issuer:
    """`jwks_url` and `token_url` on 127.0.0.1; `clients` by id; `requests` counts per client."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = uuid.uuid4().hex
        self.clients: dict[str, Client] = {}
        self.requests: Counter[str] = Counter()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/jwks"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self._kid, "alg": "RS256", "use": "sig"}]}

    def issue(self, authorization: str, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) answering one token request."""
        client_id, secret = _basic(authorization)
        self.requests[client_id] += 1
        client = self.clients.get(client_id)
        if client is None or client.secret != secret:
            return 401, {"error": "invalid_client", "error_description": "bad client credentials"}
        if form.get("grant_type") != ["client_credentials"]:
            return 400, {"error": "unsupported_grant_type"}
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": client_id,
            "aud": client.audience,
            "iat": now,
            "exp": now + client.lifetime,
            "scope": " ".join(form.get("scope", [])),
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})
        body = {"access_token": token, "token_type": "Bearer", "expires_in": client.lifetime}
        return 200, body


def _basic(authorization: str) -> tuple[str, str]:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
    return unquote(client_id), unquote(secret)


def _handler(issuer: Issuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/jwks":
                self._answer(404, {"error": "not found"})
                return
            self._answer(200, issuer.jwks())

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            if self.path != "/token":
                self._answer(404, {"error": "not found"})
                return
            self._answer(*issuer.issue(self.headers.get("Authorization", ""), form))

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the counts are in `issuer.requests`."""

    return Handler
