"""The ``download`` handler: fetch a recording's media from Bandwidth into a local directory
or an S3 bucket (``destination``, see `consumer.handlers.storage`).

The event's ``mediaUrl`` is only a claim, checked by `consumer.handlers.bandwidth` before any
request (and so before any credential) leaves the process. The request goes to a URL rebuilt
from the checked parts, never to the string as received.

Media lands as ``<destination>/<accountId>/<recordingId>.<fileFormat>`` next to a JSON sidecar
``<recordingId>.<fileFormat>.json``, streamed (never whole in memory) and all or nothing. A
recording the destination already holds, finished, for this status or ``complete``, is not
downloaded again. A reply whose content type is not audio of the event's format is not saved.
With ``on_deleted = "delete"`` a ``deleted`` event removes the stored copy, given proof
(`consumer.handlers.deletion`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final, Literal
from urllib.parse import urlsplit

import httpx
import msgspec
import structlog

from consumer.errors import PermanentFailure, PluginError, RetryLater, Skipped
from consumer.events import RecordingEvent, encode_event
from consumer.handlers.bandwidth import (
    API_URL,
    TOKEN_URL,
    Authenticator,
    BasicAuth,
    OAuth2ClientCredentials,
    authorized_get,
    checked_api_url,
    checked_media_url,
    host_and_port,
    plain_identifier,
)
from consumer.handlers.deletion import check_gone, check_same_recording, metadata_url
from consumer.handlers.storage import Body, Destination, LocalDestination, Names, Stored
from consumer.http import retry_after
from consumer.secret import read_secret

if TYPE_CHECKING:
    from consumer.handler_api import Context

ACCEPT: Final = "audio/vnd.wave, audio/mpeg, application/json"
METADATA: Final = (
    "recordingId",
    "callId",
    "conferenceId",
    "accountId",
    "fileFormat",
    "duration",
    "channels",
    "status",
)
"""Event fields stored as object metadata, under their lowercased names (as S3 returns them)."""
DEFAULT_DESTINATION: Final = "recordings"
_FILE_FORMAT = re.compile(r"[a-z0-9]{1,8}")
CONTENT_TYPES: Final = {
    "wav": frozenset({"audio/vnd.wave", "audio/wav", "audio/wave", "audio/x-wav"}),
    "mp3": frozenset({"audio/mpeg", "audio/mp3"}),
}
"""Media types accepted per fileFormat; another format accepts any ``audio/*``."""


class DownloadOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where recordings go, how to authenticate, and what to accept."""

    destination: str = DEFAULT_DESTINATION
    """A local directory or ``s3://bucket/prefix``; files go to ``<destination>/<accountId>/``."""
    directory: str | None = None
    """Deprecated alias of `destination` for a local directory."""
    endpoint_url: str | None = None
    """S3 only: the store's endpoint (MinIO, Ceph, R2); default ``$AWS_ENDPOINT_URL`` or AWS."""
    region: str | None = None
    """S3 only: default ``$AWS_REGION``, then the usual AWS configuration."""
    on_deleted: Literal["keep", "delete"] = "keep"
    """What a ``deleted`` event does to the stored copy; "delete" needs proof: the ids match the
    stored copy's and Bandwidth answers 404 for the recording at `api_url`."""
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
    api_url: str = API_URL
    """Bandwidth's Voice API base, asked whether a recording is gone; https, on `allowed_hosts`."""
    allowed_hosts: tuple[str, ...] = ("voice.bandwidth.com",)
    """``host`` allows port 443 only; ``host:port`` allows exactly that port."""
    max_bytes: int = 1 << 30
    """Larger recordings fail permanently and leave no file behind."""
    max_concurrent_uploads: int = 8
    """S3 only: recordings fetched and uploaded at once, each holding one 8 MiB part (about
    12 MB of RSS with the clients' buffers); the others wait for a slot before asking
    Bandwidth. The default keeps a worker under about 200 MB however many are in flight."""
    timeout: float = 30.0
    """Seconds for connecting, and between bytes received, per request."""


class DownloadHandler:
    """Downloads recordings that have a ``mediaUrl``; events without one are skipped (`Skipped`),
    ``deleted`` ones follow `on_deleted`."""

    Options: ClassVar[type[DownloadOptions]] = DownloadOptions

    def __init__(self, options: DownloadOptions | None = None) -> None:
        self._options = options = options or DownloadOptions()
        if urlsplit(options.token_url).scheme != "https":
            raise PluginError("handlers.download.token_url must be an https URL")
        self._allowed = frozenset(host_and_port(entry) for entry in options.allowed_hosts)
        self._api_url = checked_api_url(options.api_url, self._allowed, "handlers.download.api_url")
        self._destination = _destination(options)
        self._auth: Authenticator | None = None

    async def start(self) -> None:
        """Read the credentials and check the destination (a bucket gets a probe object), so
        either being wrong stops the worker before it consumes."""
        o, key = self._options, "handlers.download."
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
        await self._destination.start()

    async def close(self) -> None:
        await self._destination.close()

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        if event.status == "deleted":
            await self._deleted(event, ctx)
            return
        if event.media_url is None:
            raise Skipped("no mediaUrl, nothing to download")
        url = checked_media_url(event, self._allowed)
        names = _names(event)
        record = msgspec.json.decode(encode_event(event))
        metadata = {k.lower(): str(record[k]) for k in METADATA if record.get(k) is not None}
        path = self._destination.location(names)
        stored = await self._destination.stored(names, metadata)
        if stored is Stored.DONE:
            ctx.log.info("already downloaded", path=path)
            return
        if stored is Stored.OTHER:
            ctx.log.info("replacing a different stored copy", path=path)
        async with self._destination.writing():
            body = await self._fetch(url, names, record, metadata, ctx)
        ctx.log.info("recording downloaded", path=path, bytes=body.size)

    async def _deleted(self, event: RecordingEvent, ctx: Context) -> None:
        names = _names(event)
        path = self._destination.location(names)
        if self._options.on_deleted == "keep":
            ctx.log.info("recording deleted at Bandwidth; stored copy kept", path=path)
            return
        stored = await self._destination.identity(names)
        if stored is None:
            ctx.log.info("nothing stored to delete", path=path)
            return
        check_same_recording(event, stored)
        url = metadata_url(self._api_url, event)
        await check_gone(url, self._auth, ctx, seconds=self._options.timeout)
        await self._destination.delete(names)
        ctx.log.info("stored recording deleted", path=path)

    async def _fetch(
        self,
        url: str,
        names: Names,
        record: dict[str, object],
        metadata: dict[str, str],
        ctx: Context,
    ) -> Body:
        try:
            response = await authorized_get(
                self._auth, ctx, url, accept=ACCEPT, seconds=self._options.timeout
            )
            try:
                _check_status(response)
                # `<recordingId>.<fileFormat>`, and a recordingId has no dots.
                _check_content_type(response, names.media.rpartition(".")[2])
                content_type = response.headers.get("content-type")
                body = _body(response, self._options.max_bytes)
                sidecar_of = partial(_sidecar_and_metadata, names, record, metadata, content_type)
                await self._destination.save(names, body, content_type, metadata, sidecar_of)
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            raise RetryLater(f"media download failed: {type(exc).__name__}") from exc
        return body


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if status == 200:
        return
    if status == 429 or status >= 500:
        delay = retry_after(response.headers.get("retry-after"))
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


def _body(response: httpx.Response, max_bytes: int) -> Body:
    """The response's bytes as a `Body`; PermanentFailure at once if it declares too many."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PermanentFailure(f"recording is {declared} bytes, more than max_bytes={max_bytes}")
    return Body(response.aiter_bytes(), max_bytes)


def _sidecar_and_metadata(
    names: Names,
    record: dict[str, object],
    metadata: dict[str, str],
    content_type: str | None,
    body: Body,
) -> tuple[bytes, dict[str, str]]:
    """The sidecar and the media's metadata, once `body` has been read to its end."""
    done = {
        "file": names.media,
        "bytes": body.size,
        "sha256": body.sha256,
        "contentType": content_type,
        "completedAt": datetime.now(UTC).isoformat(),
    }
    sidecar = msgspec.json.encode({"event": record, "download": done})
    return sidecar, metadata | {"bytes": str(body.size), "sha256": body.sha256}


def _names(event: RecordingEvent) -> Names:
    """The account's folder and the media file's name, from checked identifiers."""
    account = plain_identifier(event.account_id, "accountId")
    recording = plain_identifier(event.recording_id, "recordingId")
    file_format = event.file_format or "wav"
    if not _FILE_FORMAT.fullmatch(file_format):
        raise PermanentFailure("fileFormat is not a plain lowercase word")
    return Names(account, f"{recording}.{file_format}")


def _destination(options: DownloadOptions) -> Destination:
    key = "handlers.download."
    target = options.destination
    if options.directory is not None:
        if target != DEFAULT_DESTINATION:
            raise PluginError(f"{key}directory and {key}destination: set only destination")
        structlog.get_logger("consumer.download").warning(
            f"{key}directory is deprecated: use {key}destination"
        )
        target = options.directory
    if target.startswith("s3://"):
        # Imported here: aiobotocore is heavy, and a local destination never needs it.
        from consumer.handlers.s3 import MAX_COPY, S3Destination

        if options.max_bytes > MAX_COPY:
            raise PluginError(f"{key}max_bytes: at most {MAX_COPY} for an s3:// destination")
        if options.max_concurrent_uploads < 1:
            raise PluginError(f"{key}max_concurrent_uploads: must be at least 1")
        return S3Destination(
            target,
            endpoint_url=options.endpoint_url,
            region=options.region,
            max_uploads=options.max_concurrent_uploads,
        )
    if "://" in target:
        raise PluginError(f"{key}destination: {target!r} is neither a path nor s3://bucket/prefix")
    if options.endpoint_url is not None or options.region is not None:
        raise PluginError(f"{key}endpoint_url and {key}region apply to s3:// destinations only")
    return LocalDestination(Path(target))
