"""The callback endpoint: who may post, what is taken, and what each answer means.

200: stored (acknowledged by Kafka, or fsync'd to the spool). 401, 404, 405, 408, 413, 417, 400:
refused, never produced (400 also when the sender breaks off or garbles its body). 503 with
Retry-After: not stored (spool full or unwritable while Kafka does not acknowledge). 500: not
stored, a bug (counted and logged as ``internal_error``). Bandwidth documents no retry after an
answer and no fallback URL for Recording Available (README: "Receiving callbacks from
Bandwidth").
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from consumer.ingress.auth import Credentials
from consumer.ingress.metrics import IngressMetrics, Refusals
from consumer.ingress.spool import SpooledCallback, SpoolFull, SpoolUnwritable
from consumer.ingress.store import Store
from consumer.observability import tracing
from consumer.redaction import error_line
from consumer.settings.config import IngressSettings

RECEIVED_AT = "ingress.received_at"
REQUEST_ID = "ingress.request_id"
REQUEST_ID_RESPONSE = "X-Request-Id"
RETRY_AFTER_SECONDS = 5


class _Ids(msgspec.Struct):
    """The fields that choose the Kafka key (Bandwidth's names); any other field, or type, is
    left to the worker."""

    recordingId: Any = None
    callId: Any = None
    conferenceId: Any = None


_DECODER = msgspec.json.Decoder(_Ids)


class _Refused(Exception):
    """A request that is answered with a 4xx and never produced; `reason` labels the count."""

    def __init__(self, status: int, reason: str, text: str, *, close: bool = False) -> None:
        super().__init__(text)
        self.status, self.reason, self.text, self.close = status, reason, text, close


class CallbackApp:
    """Answers the callback port: `path` takes POSTs, everything else is refused."""

    def __init__(
        self,
        ingress: IngressSettings,
        credentials: Credentials | None,
        store: Store,
        metrics: IngressMetrics,
    ) -> None:
        self._path = ingress.path
        self._max_body = ingress.max_body_bytes
        self._body_timeout = ingress.body_timeout
        self._credentials = credentials
        self._store = store
        self._answers = metrics.answers
        self.refusals = Refusals(metrics)
        """Run its `report` beside the app."""
        # 64 random bits per start and a count: unique as uuid4's, without a urandom call each.
        self._id_prefix = secrets.token_hex(8)
        self._ids = itertools.count()
        self._clock = _Clock()

    async def answer(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = f"{self._id_prefix}{next(self._ids):016x}"
        try:
            self._admit(request)
            content = request.content
            body = content.read_nowait()  # most bodies came with their headers: no timer needed
            if len(body) > self._max_body or not content.is_eof():
                body = await self._rest_of_body(request, body)
            headers: tuple[tuple[str, bytes], ...] = (
                (RECEIVED_AT, self._clock.now()),
                (REQUEST_ID, request_id.encode()),
            )
            key = _key(body)
            span = tracing.received(request.headers, self._path)
            if span is None:
                await self._store.put(SpooledCallback(value=body, key=key, headers=headers))
            else:
                with span as current:
                    current.set_attribute("ingress.request_id", request_id)
                    headers += tracing.context_headers()
                    await self._store.put(SpooledCallback(value=body, key=key, headers=headers))
            response = web.Response(status=200)
        except _Refused as refused:
            self.refusals.note(refused.reason, refused.text)
            response = _refusal(refused)
        except (SpoolFull, SpoolUnwritable) as exc:
            reason = "spool_full" if isinstance(exc, SpoolFull) else "spool_unwritable"
            self.refusals.note(reason, str(exc))
            response = web.Response(
                status=503,
                text=f"not stored: {reason.replace('_', ' ')}; retry later\n",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        except Exception as exc:  # a bug: still answered, counted and logged at a bounded rate
            self.refusals.note("internal_error", error_line(exc), exc)
            response = web.Response(status=500, text="not stored: internal error\n")
        response.headers[REQUEST_ID_RESPONSE] = request_id
        self._answers.answered(response.status, time.perf_counter() - started)
        return response

    def _admit(self, request: web.BaseRequest) -> None:
        """Raises _Refused for another path or method, or missing or wrong credentials: all
        decided by the headers alone."""
        # raw_path first: request.path builds a URL object, needed only for the absolute form
        # (``POST http://host/callbacks``) or percent-encoding, which RFC 9112 says to take.
        if request.raw_path.partition("?")[0] != self._path and request.path != self._path:
            raise _Refused(404, "not_found", f"not found: callbacks go to POST {self._path}")
        if request.method != "POST":
            raise _Refused(
                405,
                "method_not_allowed",
                f"{request.method} is not accepted: callbacks must be POSTed (set "
                'recordingAvailableMethod="POST" on Bandwidth\'s side)',
            )
        if self._credentials is not None and not self._credentials.accepts(
            request.headers.get("Authorization")
        ):
            raise _Refused(401, "unauthorized", "missing or wrong Basic credentials")

    async def _rest_of_body(self, request: web.BaseRequest, start: bytes) -> bytes:
        """The body after `start`, its first part, within ``body_timeout``; at most the cap,
        and nothing more read when its announced length is over it."""
        length = request.content_length
        if length is not None and length > self._max_body:
            raise self._too_large()
        content = request.content
        buffer = bytearray(start)
        try:
            async with asyncio.timeout(self._body_timeout):
                if (expect := request.headers.get("Expect")) is not None:
                    await _continue(request, expect)
                while len(buffer) <= self._max_body and not content.at_eof():
                    buffer += await content.readany()
        except (ConnectionError, HttpProcessingError) as exc:  # the sender's side, not a bug
            raise _Refused(
                400, "body_incomplete", f"body not received: {error_line(exc)}", close=True
            ) from None
        except TimeoutError:
            raise _Refused(
                408,
                "body_timeout",
                f"body not received within {self._body_timeout:g} s",
                close=True,
            ) from None
        if len(buffer) > self._max_body:
            raise self._too_large()
        return bytes(buffer)

    def _too_large(self) -> _Refused:
        return _Refused(413, "too_large", f"body over {self._max_body} bytes", close=True)


class _Clock:
    """Now in UTC, ISO 8601 to the microsecond (``2026-12-03T15:04:05.123456Z``): the text up
    to the second is formatted once a second, not per callback (a fifth of datetime's cost)."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = b""

    def now(self) -> bytes:
        second, nanos = divmod(time.time_ns(), 1_000_000_000)
        if second != self._second:
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
            self._second = second
        return b"%s.%06dZ" % (self._text, nanos // 1000)


def _key(body: bytes) -> bytes | None:
    """recordingId, else callId, else conferenceId; raises _Refused when `body` is not a JSON
    object in UTF-8."""
    if not body.isascii():  # msgspec skips the fields it is not asked for unchecked
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Refused(
                400, "not_json", f"not UTF-8: {exc.reason} at byte {exc.start}"
            ) from None
    try:
        ids = _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        raise _Refused(400, "not_object", f"not a JSON object: {exc}") from None
    except msgspec.DecodeError as exc:
        raise _Refused(400, "not_json", f"not JSON: {exc}") from None
    except RecursionError:
        raise _Refused(400, "not_json", "not JSON this ingress reads: nested too deeply") from None
    for value in (ids.recordingId, ids.callId, ids.conferenceId):
        if isinstance(value, str) and value:
            return value.encode()
    return None


async def _continue(request: web.BaseRequest, expect: str) -> None:
    """Send ``100 Continue`` to a client that waits for it before its body (aiohttp's
    low-level server leaves that to the application); 417 for any other expectation."""
    if expect.lower() != "100-continue":
        raise _Refused(417, "expectation_failed", f"unknown Expect: {expect}", close=True)
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer's own size starts after the interim one


_HEADERS = {401: {"WWW-Authenticate": 'Basic realm="callbacks"'}, 405: {"Allow": "POST"}}


def _refusal(refused: _Refused) -> web.Response:
    headers = _HEADERS.get(refused.status, {})
    response = web.Response(status=refused.status, text=refused.text + "\n", headers=headers)
    if refused.close:
        response.force_close()  # the rest of the body is never read
    return response
