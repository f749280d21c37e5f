"""A real S3-compatible server on loopback (moto's standalone server) and a proxy that breaks
part uploads, for the download handler's bucket destination."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

from consumer.devkit.devkafka import free_port

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


class PartBreaker:
    """A TCP proxy to the store that cuts, mid-body, every part upload of the next `doomed`
    multipart uploads (however often the client tries a part).

    The store itself stays up (HEAD, abort and the other calls pass), as when its write path
    fails; a cut part upload reaches the client as a dropped connection.
    """

    def __init__(self, upstream_port: int, doomed: int = 0) -> None:
        self._upstream = upstream_port
        self.doomed = doomed
        self._doomed_ids: set[bytes] = set()
        self._spared_ids: set[bytes] = set()
        self.cut = 0
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


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
