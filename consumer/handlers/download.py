"""The ``download`` handler: fetch a recording's media from Bandwidth into a local directory.

The event's ``mediaUrl`` is only a claim: it must be https, on an allowed host, and exactly the
media path of this event's own ids, or the message fails permanently before any request (and so
before any credential) leaves the process. The request goes to a URL rebuilt from the checked
parts, never to the string as received.

Files land as ``<directory>/<accountId>/<recordingId>.<fileFormat>`` next to a JSON sidecar
``<recordingId>.<fileFormat>.json``. Both are written to a temporary file, fsynced and renamed
into place, the sidecar last: a sidecar whose byte count matches the media file is what "done"
means, so a crash between the two renames only costs a repeated download. A symlinked
``<accountId>`` folder is refused, not followed (see `consumer.handlers.files`), and a reply
whose content type is not audio of the event's format is not saved.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar, Final, Literal
from urllib.parse import urlsplit

import httpx
import msgspec
import structlog

from consumer.errors import PermanentFailure, PluginError, RetryLater
from consumer.events import ConferenceRecordingAvailable, RecordingEvent, encode_event
from consumer.handlers.bandwidth_auth import (
    TOKEN_URL,
    Authenticator,
    BasicAuth,
    OAuth2ClientCredentials,
)
from consumer.handlers.files import Folder, remove_stale_parts
from consumer.secret import read_secret

if TYPE_CHECKING:
    from consumer.handler import Context

ACCEPT: Final = "audio/vnd.wave, audio/mpeg, application/json"
WRITE_BUFFER: Final = 1 << 20
"""Bytes gathered before one write in a worker thread: few thread hops, bounded memory."""
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_FILE_FORMAT = re.compile(r"[a-z0-9]{1,8}")
CONTENT_TYPES: Final = {
    "wav": frozenset({"audio/vnd.wave", "audio/wav", "audio/wave", "audio/x-wav"}),
    "mp3": frozenset({"audio/mpeg", "audio/mp3"}),
}
"""Media types accepted per fileFormat; another format accepts any ``audio/*``."""


class DownloadOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where recordings go, how to authenticate, and what to accept."""

    directory: str = "recordings"
    """Target root; files go to ``<directory>/<accountId>/``."""
    auth: Literal["oauth2", "basic"] = "oauth2"
    """oauth2: client credentials; basic: legacy API user (retired by Bandwidth 2026-12-02)."""
    client_id_env: str = "BANDWIDTH_CLIENT_ID"
    client_secret_env: str = "BANDWIDTH_CLIENT_SECRET"
    client_id_file: str | None = None
    """Read the client id from this file instead of the environment."""
    client_secret_file: str | None = None
    username_env: str = "BANDWIDTH_USERNAME"
    password_env: str = "BANDWIDTH_PASSWORD"
    username_file: str | None = None
    password_file: str | None = None
    token_url: str = TOKEN_URL
    """Must be https."""
    allowed_hosts: tuple[str, ...] = ("voice.bandwidth.com",)
    """``host`` allows port 443 only; ``host:port`` allows exactly that port."""
    max_bytes: int = 1 << 30
    """Larger recordings fail permanently and leave no file behind."""
    timeout: float = 30.0
    """Seconds for connecting, and between bytes received, per request."""


class DownloadHandler:
    """Downloads recordings that have a ``mediaUrl``; events without one are logged and skipped."""

    Options: ClassVar[type[DownloadOptions]] = DownloadOptions

    def __init__(self, options: DownloadOptions | None = None) -> None:
        self._options = options = options or DownloadOptions()
        if urlsplit(options.token_url).scheme != "https":
            raise PluginError("handlers.download.token_url must be an https URL")
        self._allowed = frozenset(_host_and_port(entry) for entry in options.allowed_hosts)
        self._directory = Path(options.directory)
        self._auth: Authenticator | None = None

    async def start(self) -> None:
        """Read the credentials, so a missing one stops the worker before it consumes; remove
        temporary files an earlier run left behind."""
        o, key = self._options, "handlers.download."
        for path in await asyncio.to_thread(remove_stale_parts, self._directory):
            structlog.get_logger("consumer.download").info(
                "removed stale temporary file", path=path
            )
        if o.auth == "basic":
            self._auth = BasicAuth(
                read_secret(o.username_env, o.username_file, key=key + "username_env"),
                read_secret(o.password_env, o.password_file, key=key + "password_env"),
            )
        else:
            self._auth = OAuth2ClientCredentials(
                read_secret(o.client_id_env, o.client_id_file, key=key + "client_id_env"),
                read_secret(
                    o.client_secret_env, o.client_secret_file, key=key + "client_secret_env"
                ),
                token_url=o.token_url,
                timeout=o.timeout,
            )

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        if event.media_url is None:
            ctx.log.info("no mediaUrl, nothing to download")
            return
        url = checked_media_url(event, self._allowed)
        folder, media, sidecar = self._paths(event)
        path = str(folder.path / media)
        if await asyncio.to_thread(_already_done, folder, media, sidecar, event.status):
            ctx.log.info("already downloaded", path=path)
            return
        size, digest, content_type = await self._fetch(url, folder, media, ctx)
        record = {
            "event": msgspec.json.decode(encode_event(event)),
            "download": {
                "file": media,
                "bytes": size,
                "sha256": digest,
                "contentType": content_type,
                "completedAt": datetime.now(UTC).isoformat(),
            },
        }
        await asyncio.to_thread(folder.write_atomically, sidecar, msgspec.json.encode(record))
        ctx.log.info("recording downloaded", path=path, bytes=size)

    def _paths(self, event: RecordingEvent) -> tuple[Folder, str, str]:
        """The account's folder, and the media and sidecar file names in it."""
        account = _identifier(event.account_id, "accountId")
        recording = _identifier(event.recording_id, "recordingId")
        file_format = event.file_format or "wav"
        if not _FILE_FORMAT.fullmatch(file_format):
            raise PermanentFailure("fileFormat is not a plain lowercase word")
        media = f"{recording}.{file_format}"
        # `<file>.json`, not `<recording>.json`: a fileFormat of "json" must not clobber it.
        return Folder(self._directory, account), media, media + ".json"

    async def _fetch(
        self, url: str, folder: Folder, media: str, ctx: Context
    ) -> tuple[int, str, str | None]:
        try:
            response = await self._send(url, ctx)
            try:
                _check_status(response)
                # `<recordingId>.<fileFormat>`, and a recordingId has no dots.
                _check_content_type(response, media.rpartition(".")[2])
                size, digest = await _save(response, folder, media, self._options.max_bytes)
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            raise RetryLater(f"media download failed: {type(exc).__name__}") from exc
        return size, digest, response.headers.get("content-type")

    async def _send(self, url: str, ctx: Context) -> httpx.Response:
        """The streaming response; after a 401 the credentials are renewed and tried once more."""
        if self._auth is None:
            raise RuntimeError("the download handler was used before start()")
        for first_try in (True, False):
            authorization = await self._auth.authorization(ctx.http, ctx.log)
            request = ctx.http.build_request(
                "GET",
                url,
                headers={"Authorization": authorization, "Accept": ACCEPT},
                timeout=self._options.timeout,
            )
            response = await ctx.http.send(request, stream=True, follow_redirects=False)
            if response.status_code != 401 or not first_try:
                break
            await response.aclose()
            ctx.log.info("media request unauthorized, renewing credentials")
            self._auth.rejected(authorization)
        return response


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
    if isinstance(event, ConferenceRecordingAvailable):
        subject = f"conferences/{_identifier(event.conference_id, 'conferenceId')}"
    else:
        subject = f"calls/{_identifier(event.call_id, 'callId')}"
    account = _identifier(event.account_id, "accountId")
    recording = _identifier(event.recording_id, "recordingId")
    return f"/api/v2/accounts/{account}/{subject}/recordings/{recording}/media"


def _identifier(value: str | None, name: str) -> str:
    # Letters, digits, '-' and '_' only: no separators, no dots, so never a path outside the root.
    if value is None or not _IDENTIFIER.fullmatch(value):
        raise PermanentFailure(f"{name} is missing or not a plain identifier")
    return value


def _host_and_port(entry: str) -> tuple[str, int]:
    host, _, port = entry.strip().lower().rpartition(":")
    if not host:
        return port, 443
    if not port.isdigit():
        raise PluginError(f"handlers.download.allowed_hosts: bad entry {entry!r}")
    return host, int(port)


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if status == 200:
        return
    if status == 429 or status >= 500:
        delay = _retry_after(response.headers.get("retry-after"))
        raise RetryLater(f"media request answered HTTP {status}", delay=delay)
    if status == 401:
        raise RetryLater("media request unauthorized even with renewed credentials: HTTP 401")
    raise PermanentFailure(f"media request answered HTTP {status}")


def _check_content_type(response: httpx.Response, file_format: str) -> None:
    """A 200 that is not audio of the format asked for is not the recording: an error page from
    something in between, or a server fault. Retryable: neither says the recording is gone, and
    the retries are bounded before the message is dead-lettered with this reason."""
    given = response.headers.get("content-type", "")
    media_type = given.partition(";")[0].strip().lower()
    expected = CONTENT_TYPES.get(file_format)
    if expected is None:
        if media_type.startswith("audio/"):
            return
    elif media_type in expected:
        return
    wanted = ", ".join(sorted(expected)) if expected else "audio/*"
    raise RetryLater(
        f"media request answered content type {given[:100]!r}, not {wanted} "
        f"for a {file_format} recording"
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


async def _save(
    response: httpx.Response, folder: Folder, media: str, max_bytes: int
) -> tuple[int, str]:
    """Stream the body to `media` atomically; (size, sha256). Nothing is left behind on failure."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PermanentFailure(f"recording is {declared} bytes, more than max_bytes={max_bytes}")
    part = folder.part_name(media)
    file: IO[bytes] | None = None
    digest, size, pending = hashlib.sha256(), 0, bytearray()
    try:
        # Inside the try: a cancellation right after the file is made still removes it.
        file = await asyncio.to_thread(folder.create, part)
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise PermanentFailure(f"recording is larger than max_bytes={max_bytes}")
            pending += chunk
            if len(pending) >= WRITE_BUFFER:
                await asyncio.to_thread(_write, file, digest, bytes(pending))
                pending.clear()
        await asyncio.to_thread(_write, file, digest, bytes(pending))
        await asyncio.to_thread(folder.commit, file, part, media)
    except BaseException:
        folder.discard(file, part)
        raise
    return size, digest.hexdigest()


def _write(file: IO[bytes], digest: hashlib._Hash, data: bytes) -> None:
    file.write(data)
    digest.update(data)


class _Done(msgspec.Struct):
    bytes: int


class _SidecarEvent(msgspec.Struct):
    status: str | None = None


class _Sidecar(msgspec.Struct):
    event: _SidecarEvent
    download: _Done


def _already_done(folder: Folder, media: str, sidecar: str, status: str | None) -> bool:
    """A sidecar matching the media file's size, for this status or for ``complete``.

    A ``partial`` recording is fetched again when its ``complete`` event arrives.
    """
    try:
        done = msgspec.json.decode(folder.read(sidecar), type=_Sidecar)
        size = folder.size(media)
    except (OSError, msgspec.DecodeError):
        return False
    return size == done.download.bytes and done.event.status in (status, "complete")
