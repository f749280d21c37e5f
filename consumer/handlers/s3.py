"""An S3-compatible bucket as the download handler's destination (aiobotocore).

Objects: ``<prefix>/<accountId>/<recordingId>.<fileFormat>`` and its ``.json`` sidecar. The
media streams in 8 MiB parts of a multipart upload (one PutObject when smaller), each read
into the same buffer and sent from it without a copy, so an upload holds one part, not the
recording; a failed or cancelled upload is aborted. At most `max_uploads` recordings are
fetched and stored at once (the handler waits for a slot before asking Bandwidth), so part
buffers take at most ``max_uploads * PART_SIZE`` whatever ``engine.max_in_flight`` is.

"Done" without downloading: Bandwidth's event carries no size or checksum, so the object's
own metadata says what it is. The byte count and SHA-256 are known only after the last byte,
so they are written last: a PutObject carries them from the start (its sidecar written
before it), a multipart upload gets them by a server-side copy onto itself after its sidecar
is written. One HEAD then decides: metadata with ``sha256`` and ``bytes`` equal to the
object's length, for this recording, duration and status (or ``complete``), is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Final
from urllib.parse import quote, urlsplit

import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from consumer.errors import ConfigError, PermanentFailure, RetryLater
from consumer.handlers.deletion import IDENTITY
from consumer.handlers.storage import Body, Names, SidecarOf, Stored
from consumer.redaction import error_line

PART_SIZE: Final = 8 << 20
"""Bytes per uploaded part (S3's minimum is 5 MiB): the memory one upload holds."""
MAX_COPY: Final = 5 << 30
"""S3's largest CopyObject, by which a multipart upload's metadata is sealed."""
THROTTLING: Final = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout"})
_KEY = "handlers.download.destination"


class S3Destination:
    """``s3://bucket/prefix``; credentials, region and endpoint from the AWS environment."""

    def __init__(
        self, url: str, *, endpoint_url: str | None, region: str | None, max_uploads: int
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"{_KEY}: {url!r} is not s3://bucket/prefix", key=_KEY)
        self._bucket = parts.netloc
        prefix = parts.path.strip("/")
        self._prefix = f"{prefix}/" if prefix else ""
        self._endpoint_url = endpoint_url
        # botocore reads AWS_DEFAULT_REGION; AWS_REGION is what the other AWS SDKs read.
        self._region = region or os.environ.get("AWS_REGION")
        self._exits = contextlib.AsyncExitStack()
        self._uploads = asyncio.Semaphore(max_uploads)
        self._client: Any = None
        self._log = structlog.get_logger("consumer.download")

    async def start(self) -> None:
        """Open the client and write and delete a zero-byte probe object."""
        config = AioConfig(
            # Two tries inside an attempt (a part tried again there spares re-downloading the
            # whole recording); beyond that the engine's backoff decides, throttling included.
            retries={"total_max_attempts": 2, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            # Handlers run concurrently (max_in_flight): more than botocore's default of 10.
            max_pool_connections=32,
            # The body is SHA-256'd by us; botocore's extra CRC32 pass would only cost CPU.
            request_checksum_calculation="when_required",
        )
        session = get_session()
        self._client = await self._exits.enter_async_context(
            session.create_client(
                "s3", region_name=self._region, endpoint_url=self._endpoint_url, config=config
            )
        )
        probe = f"{self._prefix}.probe-{secrets.token_hex(6)}"
        try:
            await self._client.put_object(Bucket=self._bucket, Key=probe, Body=b"")
            await self._client.delete_object(Bucket=self._bucket, Key=probe)
        except (ClientError, BotoCoreError) as exc:
            await self.close()
            raise ConfigError(
                f"{_KEY}: cannot write to s3://{self._bucket}/{self._prefix}: {_reason(exc)}",
                key=_KEY,
            ) from None

    async def close(self) -> None:
        await self._exits.aclose()

    def writing(self) -> AbstractAsyncContextManager[Any]:
        return self._uploads

    def location(self, names: Names) -> str:
        return f"s3://{self._bucket}/{self._key(names.account, names.media)}"

    def _key(self, account: str, name: str) -> str:
        return f"{self._prefix}{account}/{name}"

    async def _head(self, names: Names) -> dict[str, Any] | None:
        """The media object's HEAD reply, or None if there is no such object."""
        key = self._key(names.account, names.media)
        try:
            head: dict[str, Any] = await self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise _failure(exc, "HEAD", key) from exc
        except BotoCoreError as exc:
            raise _failure(exc, "HEAD", key) from exc
        return head

    async def identity(self, names: Names) -> dict[str, str] | None:
        head = await self._head(names)
        if head is None:
            return None
        have: dict[str, str] = head.get("Metadata", {})
        return {key: have[key] for key in IDENTITY if key in have}

    async def stored(self, names: Names, metadata: dict[str, str]) -> Stored:
        head = await self._head(names)
        if head is None:
            return Stored.NOTHING
        have: dict[str, str] = head.get("Metadata", {})
        same = all(have.get(k) == metadata.get(k) for k in ("recordingid", "duration"))
        if (
            same
            and have.get("sha256")
            and have.get("bytes") == str(head["ContentLength"])
            and have.get("status") in (metadata.get("status"), "complete")
        ):
            return Stored.DONE
        return Stored.OTHER

    async def save(
        self,
        names: Names,
        body: Body,
        content_type: str | None,
        metadata: dict[str, str],
        sidecar_of: SidecarOf,
    ) -> None:
        key = self._key(names.account, names.media)
        media_type = content_type or "application/octet-stream"
        parts = _Parts(aiter(body))
        first = await parts.next()
        try:
            if len(first) < PART_SIZE:
                sidecar, done = sidecar_of(body)
                await self._put_sidecar(names, sidecar)
                await self._client.put_object(
                    Bucket=self._bucket,
                    Key=key,
                    Body=_PartFile(first),
                    ContentType=media_type,
                    Metadata=_ascii(done),
                )
                return
            # The ids from the start: a `deleted` event is checked against them (`identity`)
            # even if the upload is never sealed with its digest.
            ids = {k: v for k, v in metadata.items() if k in IDENTITY}
            await self._upload(names, body, first, parts, media_type, ids, sidecar_of)
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc, "upload", key) from exc

    async def _upload(
        self,
        names: Names,
        body: Body,
        first: memoryview,
        parts: _Parts,
        media_type: str,
        ids: dict[str, str],
        sidecar_of: SidecarOf,
    ) -> None:
        """Multipart: parts of `PART_SIZE`, aborted on any failure or cancellation."""
        bucket, client = self._bucket, self._client
        key = self._key(names.account, names.media)
        started = await client.create_multipart_upload(
            Bucket=bucket, Key=key, ContentType=media_type, Metadata=_ascii(ids)
        )
        upload_id = started["UploadId"]
        try:
            done: list[dict[str, Any]] = []
            part = first
            while part:
                number = len(done) + 1
                reply = await client.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=_PartFile(part),
                )
                done.append({"PartNumber": number, "ETag": reply["ETag"]})
                part = await parts.next()
            await client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
            )
        except BaseException:
            # Shielded: a cancelled attempt still aborts, so no part is left billed and hidden.
            await asyncio.shield(self._abort(key, upload_id))
            raise
        sidecar, metadata = sidecar_of(body)
        await self._put_sidecar(names, sidecar)
        await client.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key},
            MetadataDirective="REPLACE",
            ContentType=media_type,
            Metadata=_ascii(metadata),
        )

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            await self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload_id
            )
        except (ClientError, BotoCoreError) as exc:
            self._log.warning(
                "multipart upload not aborted; the bucket's lifecycle rule must remove it",
                key=key,
                error=_reason(exc),
            )

    async def _put_sidecar(self, names: Names, sidecar: bytes) -> None:
        await self._client.put_object(
            Bucket=self._bucket,
            Key=self._key(names.account, names.sidecar),
            Body=sidecar,
            ContentType="application/json",
        )

    async def delete(self, names: Names) -> bool:
        key = self._key(names.account, names.media)
        try:
            found = await self._head(names) is not None
            # Deleting a missing key succeeds in S3: a redelivered `deleted` event is a no-op.
            await self._client.delete_object(Bucket=self._bucket, Key=key)
            await self._client.delete_object(
                Bucket=self._bucket, Key=self._key(names.account, names.sidecar)
            )
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc, "delete", key) from exc
        return found


class _Parts:
    """`chunks` in parts of exactly `PART_SIZE` bytes (the last one shorter), each read into
    the same buffer: it grows during the first part and is overwritten in place after that."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self._rest = memoryview(b"")
        """What the last chunk had beyond the previous part."""

    async def next(self) -> memoryview:
        """The next part: a view of the buffer, valid until the next call; empty at the end."""
        buffer, rest, filled = self._buffer, self._rest, 0
        while True:
            if rest:
                taken = rest[: PART_SIZE - filled]
                # Appends during the first part (no view of the buffer exists yet), then
                # overwrites: the buffer never changes size while a part's view is out.
                buffer[filled : filled + len(taken)] = taken
                filled += len(taken)
                rest = rest[len(taken) :]
                if filled == PART_SIZE:
                    break
            chunk = await anext(self._chunks, None)
            if chunk is None:
                break
            rest = memoryview(chunk)
        self._rest = rest
        return memoryview(buffer)[:filled]


class _PartFile(io.BytesIO):
    """A part as the file object botocore and aiohttp read in 64 KiB slices, without copying
    it whole as ``BytesIO(part)`` would. A BytesIO because aiohttp sends one from the event
    loop, where another file object is read in a worker thread."""

    def __init__(self, part: memoryview) -> None:
        super().__init__()
        self._part = part
        self._position = 0

    def getbuffer(self) -> memoryview:
        # A view of its own: aiohttp releases what it is given.
        return self._part[:]

    def getvalue(self) -> bytes:
        return bytes(self._part)

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._part) if size is None or size < 0 else self._position + size
        chunk = bytes(self._part[self._position : end])
        self._position += len(chunk)
        return chunk

    read1 = read

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        chunk = self._part[self._position : self._position + len(target)]
        target[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._part)}
        self._position = max(0, min(base[whence] + offset, len(self._part)))
        return self._position

    def tell(self) -> int:
        return self._position


def _ascii(metadata: dict[str, str]) -> dict[str, str]:
    # S3 metadata travels in HTTP headers: printable ASCII only.
    return {k: quote(v, safe=" -_.:+/=@") for k, v in metadata.items()}


def _reason(exc: ClientError | BotoCoreError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '?')}: {error.get('Message', '')}".strip()
    return error_line(exc)


def _failure(exc: ClientError | BotoCoreError, what: str, key: str) -> Exception:
    """Throttling, 5xx and transport errors retry; the rest (AccessDenied, NoSuchBucket, other
    4xx) are permanent, the code and message named."""
    reason = f"object store {what} of {key} failed: {_reason(exc)}"
    if isinstance(exc, BotoCoreError):
        return RetryLater(reason)
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in THROTTLING or status in (408, 429) or status >= 500:
        return RetryLater(reason)
    return PermanentFailure(reason)
