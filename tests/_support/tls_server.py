"""A real local HTTPS server standing in for Bandwidth's token, media and metadata endpoints.

It speaks just enough HTTP/1.1 for httpx (keep-alive, Content-Length or chunked bodies), counts
every connection and request, and answers API requests from a script of canned replies first,
then from the recordings it holds: ``<recording>/media`` with the audio, ``<recording>`` (the
metadata) with JSON while it holds the audio, 404 once it does not. Certificates come from a
throwaway `trustme` CA.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
from dataclasses import dataclass, field
from itertools import count

import httpx
import trustme

TOKEN_PATH = "/api/v1/oauth2/token"
_METADATA = re.compile(r"/recordings/[^/]+$")
CLIENT_ID = "kit-client-id"
CLIENT_SECRET = "kit-client-secret-do-not-leak"
USERNAME = "kit-api-user"
PASSWORD = "kit-api-password-do-not-leak"


@dataclass(frozen=True)
class Reply:
    """A canned answer; `delay` seconds pass before anything is sent."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunked: bool = False
    """Send the body chunked, without a Content-Length, as a server that does not know it would."""


@dataclass(frozen=True)
class Seen:
    """One request as the server read it; header names lowercased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FakeBandwidth:
    """Token endpoint at `TOKEN_PATH`, media at whatever paths `media` holds, and each of those
    recordings' metadata at its media path without ``/media``."""

    def __init__(self, ca: trustme.CA, token_lifetime: int = 3600) -> None:
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(self._tls)
        self.token_lifetime = token_lifetime
        self.media: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}
        """Content-Type per media path; ``audio/vnd.wave`` for paths not in it."""
        self.script: list[Reply] = []
        """Replies for the next media requests, used up in order before `media` is consulted."""
        self.requests: list[Seen] = []
        self.connections = 0
        self._valid_tokens: set[str] = set()
        self._token_numbers = count(1)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def host(self) -> str:
        """``localhost:<port>``, as the allow-list names it."""
        return f"localhost:{self.port}"

    def url(self, path: str) -> str:
        return f"https://{self.host}{path}"

    @property
    def token_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.path == TOKEN_PATH]

    @property
    def media_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.path.endswith("/media")]

    @property
    def metadata_requests(self) -> list[Seen]:
        return [r for r in self.requests if _METADATA.search(r.path)]

    def revoke_tokens(self) -> None:
        """Every token handed out so far is refused from now on."""
        self._valid_tokens.clear()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while (seen := await _read_request(reader)) is not None:
                self.requests.append(seen)
                await _write_reply(writer, await self._answer(seen))
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the client went away, as timing-out clients do
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _answer(self, seen: Seen) -> Reply:
        authorization = seen.headers.get("authorization", "")
        if seen.path == TOKEN_PATH:
            if authorization != _basic(CLIENT_ID, CLIENT_SECRET):
                return Reply(401)
            if seen.body != b"grant_type=client_credentials":
                return Reply(400)
            token = f"token-{next(self._token_numbers)}"
            self._valid_tokens.add(token)
            body = f'{{"access_token":"{token}","token_type":"Bearer","expires_in":'
            return Reply(200, f"{body}{self.token_lifetime}}}".encode())
        bearer = authorization.removeprefix("Bearer ")
        if bearer not in self._valid_tokens and authorization != _basic(USERNAME, PASSWORD):
            return Reply(401)
        if self.script:
            return self.script.pop(0)
        if seen.path in self.media:
            content_type = self.content_types.get(seen.path, "audio/vnd.wave")
            return Reply(200, self.media[seen.path], {"Content-Type": content_type})
        if seen.path + "/media" in self.media:
            recording = seen.path.rpartition("/")[2]
            metadata = f'{{"recordingId":"{recording}","status":"complete"}}'.encode()
            return Reply(200, metadata, {"Content-Type": "application/json"})
        return Reply(404)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def client_for(ca: trustme.CA) -> httpx.AsyncClient:
    """An httpx client that trusts `ca`, as the worker's shared client trusts the system's."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return httpx.AsyncClient(verify=context)


async def _read_request(reader: asyncio.StreamReader) -> Seen | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, path, _ = request_line.split(" ", 2)
    headers = {}
    for line in filter(None, lines):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Seen(method, path, headers, body)


async def _write_reply(writer: asyncio.StreamWriter, reply: Reply) -> None:
    await asyncio.sleep(reply.delay)
    framing = (
        {"Transfer-Encoding": "chunked"}
        if reply.chunked
        else {"Content-Length": str(len(reply.body))}
    )
    head = [f"HTTP/1.1 {reply.status} X"]
    head += [f"{k}: {v}" for k, v in (reply.headers | framing).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    if reply.chunked:
        for start in range(0, len(reply.body), 65536):
            piece = reply.body[start : start + 65536]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
    else:
        writer.write(reply.body)
    await writer.drain()
