"""A real S3-compatible server on loopback (moto's standalone server) and proxies in front of
it that break part uploads, answer with the store's errors or count uploads under way, for the
bucket destination."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

from consumer.devkit.broker import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "us-east-1"


@contextlib.contextmanager
def moto_server(deadline: float = 60.0) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto server run as a child process until exit."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        give_up = time.monotonic() + deadline
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > give_up:
                    raise RuntimeError(f"moto server did not start on port {port}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


class _Proxy:
    """A loopback server in front of the store on `upstream_port`; `_serve` says what it does."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class PartBreaker(_Proxy):
    """A TCP proxy to the store that cuts, mid-body, every part upload of the next `doomed`
    multipart uploads (however often the client tries a part).

    The store itself stays up (HEAD, abort and the other calls pass), as when its write path
    fails; a cut part upload reaches the client as a dropped connection.
    """

    def __init__(self, upstream_port: int, doomed: int = 0) -> None:
        super().__init__(upstream_port)
        self.doomed = doomed
        self._doomed_ids: set[bytes] = set()
        self._spared_ids: set[bytes] = set()
        self.cut = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
        back = asyncio.create_task(_pipe(up_reader, writer))
        try:
            while data := await reader.read(65536):
                if self._dooms(data[:2048]):
                    self.cut += 1
                    up_writer.write(data[: len(data) // 2])
                    break
                up_writer.write(data)
                await up_writer.drain()
        except ConnectionError:
            pass
        finally:
            back.cancel()
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.transport.abort()

    def _dooms(self, head: bytes) -> bool:
        found = re.search(rb"[?&]uploadId=([^& ]+)", head)
        if found is None or b"partNumber=" not in head:
            return False
        upload = found.group(1)
        if upload not in self._doomed_ids | self._spared_ids:
            if len(self._doomed_ids) < self.doomed:
                self._doomed_ids.add(upload)
            else:
                self._spared_ids.add(upload)
        return upload in self._doomed_ids


ERROR_MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
    "AccessDenied": "Access Denied",
}
"""What S3 itself says with each error code it answers."""


@dataclass
class Fault:
    """The store's error answer to the next `times` requests of `method` whose target (path
    and query) `re.search`-matches `target`; `served` counts the answers given."""

    method: str
    target: str
    status: int
    code: str
    times: int = 1
    served: int = 0

    def matches(self, method: str, target: str) -> bool:
        return (
            self.served < self.times
            and method == self.method
            and re.search(self.target, target) is not None
        )


class FaultInjector(_Proxy):
    """An HTTP/1.1 proxy to the store that answers requests matching a `Fault` itself, with
    the status and S3 error XML the store would send, and passes everything else through.

    Requests are framed by Content-Length (the S3 client sends no chunked bodies here), so a
    kept-alive connection is inspected request by request; an answered fault closes it.
    """

    def __init__(self, upstream_port: int, *faults: Fault) -> None:
        super().__init__(upstream_port)
        self.faults = faults

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamWriter, asyncio.Task[None]] | None = None
        try:
            while head := await _request_head(reader):
                method, target, headers = _parse_head(head)
                length = int(headers.get("content-length", "0"))
                fault = next((f for f in self.faults if f.matches(method, target)), None)
                if fault is not None:
                    fault.served += 1
                    await _answer(reader, writer, headers, length, fault)
                    break
                if upstream is None:
                    up_reader, up_writer = await asyncio.open_connection(
                        "127.0.0.1", self._upstream
                    )
                    back = asyncio.create_task(_pipe(up_reader, writer))
                    # The store closed its side: close ours, or the client's next request hangs.
                    back.add_done_callback(lambda _: writer.transport.abort())
                    upstream = up_writer, back
                upstream[0].write(head)
                await _copy(reader, upstream[0], length)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if upstream is not None:
                upstream[1].cancel()
                with contextlib.suppress(Exception):
                    upstream[0].transport.abort()
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()


class UploadCounter(_Proxy):
    """An HTTP/1.1 proxy to the store counting multipart uploads under way (created, not yet
    completed or aborted) and the most it saw at once (`peak`).

    Completions are held until more than `bound` uploads are under way, or `patience` seconds
    pass: uploads a broken bound lets through then overlap the held ones, so the peak shows
    them however quickly each would otherwise finish.
    """

    def __init__(self, upstream_port: int, bound: int, patience: float = 1.0) -> None:
        super().__init__(upstream_port)
        self._bound = bound
        self._patience = patience
        self._open: set[str] = set()
        self._crowded = asyncio.Event()
        self.peak = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
        back = asyncio.create_task(_pipe(up_reader, writer))
        try:
            while head := await _request_head(reader):
                method, target, headers = _parse_head(head)
                path, _, query = target.partition("?")
                if method == "POST" and query.startswith("uploads"):
                    self._open.add(path)
                    self.peak = max(self.peak, len(self._open))
                    if len(self._open) > self._bound:
                        self._crowded.set()
                elif "uploadId=" in query and "partNumber=" not in query:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._crowded.wait(), self._patience)
                    self._open.discard(path)
                up_writer.write(head)
                await _copy(reader, up_writer, int(headers.get("content-length", "0")))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            back.cancel()
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.transport.abort()


async def _request_head(reader: asyncio.StreamReader) -> bytes:
    """The next request's line and headers; empty when the client closed the connection."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return b""


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    line, *fields = head.decode("latin-1").split("\r\n")
    method, target, _ = line.split(" ", 2)
    headers = {}
    for field in filter(None, fields):
        name, _, value = field.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", ""):
        raise NotImplementedError("FaultInjector frames requests by Content-Length only")
    return method, target, headers


async def _answer(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    headers: dict[str, str],
    length: int,
    fault: Fault,
) -> None:
    """Take the request's body (inviting it if the client waits to be asked), then the error."""
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    await reader.readexactly(length)
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{fault.code}</Code><Message>{ERROR_MESSAGES[fault.code]}</Message>"
        "<RequestId>FAULTINJECTOR</RequestId><HostId>FAULTINJECTOR</HostId></Error>"
    ).encode()
    reason = {403: "Forbidden", 500: "Internal Server Error", 503: "Slow Down"}[fault.status]
    writer.write(
        f"HTTP/1.1 {fault.status} {reason}\r\n"
        "Content-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\n"
        "x-amz-request-id: FAULTINJECTOR\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int) -> None:
    while length > 0:
        chunk = await reader.read(min(length, 65536))
        if not chunk:
            raise ConnectionError("client closed mid-body")
        length -= len(chunk)
        writer.write(chunk)
        await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
