"""The project's HTTP server: aiohttp's low-level server in the caller's event loop, with a
connection cap and deadlines against slow clients.

aiohttp parses HTTP/1.1 and closes keep-alive connections idle for ``keep_alive_timeout``. What
it lacks is added around its protocol, never inside the parsing: each connection is counted and,
at the cap, the longest-waiting connection that is not being answered makes room for the new one
(so idle or stalled clients cannot lock others out); a request's headers must arrive within
``header_timeout`` of its first byte (or of the connection), checked twice a second; with
``request_timeout`` the whole request, answer written, must fit in that many seconds from its
first byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import structlog
from aiohttp import web

from consumer.errors import ConfigError
from consumer.settings import listen as settings_listen

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
SWEEP_EVERY = 0.5
"""Seconds between checks of header deadlines: one sweep, rather than a timer per request."""

_log = structlog.get_logger("consumer.observability.serving")


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    max_connections: int
    header_timeout: float
    keep_alive_timeout: float
    request_timeout: float | None = None


def listen_address(listen: str, key: str) -> tuple[str, int] | None:
    """``host:port`` as a pair, or None when `listen` is empty; ConfigError naming `key`."""
    try:
        return settings_listen.listen_address(listen)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}", key) from None


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit; returns the soft limit now.

    Connections, Kafka's sockets, spool and handler files share it: a soft limit left at 1024
    (or lower) while the hard one allows more is the first thing many clients exhaust.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


class Listener:
    """One listening socket, its connections, and how many were refused or evicted."""

    def __init__(self, handler: Handler, limits: Limits) -> None:
        self._handler = handler
        self.limits = limits
        self.web = web.Server(
            self._handle,
            access_log=None,
            keepalive_timeout=limits.keep_alive_timeout,
            # An answer sent before the body was read (413) closes instead of draining the rest.
            lingering_time=0,
        )
        self._open: dict[asyncio.BaseTransport, _Connection] = {}
        self.draining = False
        self._closed = asyncio.Event()
        """Set when a connection goes, for `shutdown` to see whether any is left."""
        self.evicted = 0
        self.refused = 0
        self.server: asyncio.Server | None = None

    @property
    def connections(self) -> int:
        return len(self._open)

    def protocol(self) -> _Connection:
        return _Connection(self, self.web())

    def admit(self, connection: _Connection) -> bool:
        """Room for `connection`, closing the longest-waiting idle one if the cap is reached."""
        if len(self._open) >= self.limits.max_connections:
            idle = [c for c in self._open.values() if not c.answering]
            if not idle:
                self.refused += 1
                return False
            oldest = min(idle, key=lambda c: c.waiting_since)
            self.evicted += 1
            self.forget(oldest)
            oldest.transport.abort()
        self._open[connection.transport] = connection
        return True

    async def sweep(self) -> None:
        """Abort connections whose headers are overdue, every `SWEEP_EVERY` seconds."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            now = loop.time()
            for connection in list(self._open.values()):
                if connection.deadline is not None and connection.deadline < now:
                    self.forget(connection)
                    connection.transport.abort()

    def forget(self, connection: _Connection) -> None:
        if self._open.get(connection.transport) is connection:
            del self._open[connection.transport]
            self._closed.set()

    async def drain(self, grace: float) -> None:
        """Close idle connections now, the others once answered; wait up to `grace` seconds."""
        self.draining = True
        for connection in list(self._open.values()):
            if connection.idle:
                connection.transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                while self._open:
                    self._closed.clear()
                    await self._closed.wait()
        for connection in list(self._open.values()):
            connection.transport.abort()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        connection = self._open.get(request.transport)  # type: ignore[arg-type]
        if connection is None:  # evicted between its headers and this call
            raise ConnectionResetError
        connection.answer()
        try:
            if self.limits.request_timeout is None:
                response = await self._handler(request)
                if self.draining:
                    response.force_close()
                return response
            deadline = connection.waiting_since + self.limits.request_timeout
            try:
                async with asyncio.timeout_at(deadline):
                    response = await self._handler(request)
                    await response.prepare(request)
                    await response.write_eof()
            except TimeoutError:
                connection.transport.abort()
                raise ConnectionResetError from None
            return response
        finally:
            connection.answered()


class _Connection(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the cap and the header deadline."""

    def __init__(self, listener: Listener, inner: asyncio.Protocol) -> None:
        self._listener = listener
        self._inner = inner
        self._loop = asyncio.get_running_loop()
        self.deadline: float | None = None
        """When its headers must be in; checked by the listener's sweep, not a timer each."""
        self._admitted = False
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.answering = False
        self._between = False
        """A request was answered and the next one has not sent a byte: aiohttp's keep-alive."""
        self.waiting_since = self._loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self._listener.admit(self):
            self.transport.abort()
            return
        self._admitted = True
        self._inner.connection_made(transport)
        self.deadline = self.waiting_since + self._listener.limits.header_timeout

    def data_received(self, data: bytes) -> None:
        if self._between:
            self._between = False
            self.waiting_since = self._loop.time()
            self.deadline = self.waiting_since + self._listener.limits.header_timeout
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.forget(self)
        if self._admitted:
            self._inner.connection_lost(exc)

    def answer(self) -> None:
        """Its headers are in: the handler's own deadlines apply from here."""
        self.deadline = None
        self.answering = True

    def answered(self) -> None:
        self.answering = False
        self._between = True
        self.waiting_since = self._loop.time()

    @property
    def idle(self) -> bool:
        """Between requests, nothing of the next one received."""
        return self._between and not self.answering


@contextlib.asynccontextmanager
async def serve(
    handler: Handler, listen: str, limits: Limits, *, key: str, grace: float = 1.0
) -> AsyncIterator[Listener]:
    """Serve `handler` on `listen` while the block runs, then `shutdown` it (unless done).
    ConfigError names `key` when the address is malformed, empty or cannot be listened on."""
    address = listen_address(listen, key)
    if address is None:
        raise ConfigError(f"{key}: must not be empty", key)
    listener = Listener(handler, limits)
    loop = asyncio.get_running_loop()
    try:
        listener.server = await loop.create_server(listener.protocol, *address, backlog=1024)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot listen on {listen}: {exc.strerror or exc}", key) from None
    sweeping = asyncio.create_task(listener.sweep())
    try:
        yield listener
    finally:
        sweeping.cancel()
        await shutdown(listener, grace)


async def shutdown(listener: Listener, grace: float) -> None:
    """Stop accepting; requests in flight (headers or body still arriving included) have up to
    `grace` seconds to be answered, each connection closing after its answer; then close all.

    aiohttp's own shutdown stops reading at once, which would cut a body still arriving."""
    if listener.server is None:
        return
    server, listener.server = listener.server, None
    server.close()
    await listener.drain(grace)
    await listener.web.shutdown(1.0)
    await server.wait_closed()
