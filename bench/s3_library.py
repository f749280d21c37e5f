"""obstore or aiobotocore for the download handler's bucket destination, measured on moto.

Run from the repository root:  .venv/bin/python bench/s3_library.py [megabytes]
(needs ``pip install obstore``, the ``bench`` extra; moto comes with the ``dev`` extra).

For each library, in a child process of its own (so peak RSS is its own):
- 200 PutObjects of 1 MB, 32 at a time (the handler's connection pool);
- one streamed upload of `megabytes` (default 200) from an async generator of 64 KiB chunks,
  multipart in 8 MiB parts, with the child's peak RSS before and after;
- a streamed upload that fails after 20 MB, and one cancelled mid-way: is a multipart upload
  left open in the bucket?
aiobotocore runs through the project's own `S3Destination`, so the figure is the shipped code.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from consumer.handlers.s3 import PART_SIZE, S3Destination  # noqa: E402
from consumer.handlers.storage import Body, Names  # noqa: E402
from tests._support.s3_store import CREDENTIALS, REGION, moto_server  # noqa: E402

CHUNK = 64 << 10
SMALL = 1 << 20
COUNT = 200
CONCURRENCY = 32


def peak_kib() -> int:
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmHWM")).split()[1])


async def chunks(total: int, fail_at: int | None = None) -> AsyncIterator[bytes]:
    block = os.urandom(CHUNK)
    sent = 0
    while sent < total:
        if fail_at is not None and sent >= fail_at:
            raise RuntimeError("source failed mid-body")
        yield block
        sent += CHUNK
        await asyncio.sleep(0)


class Obstore:
    def __init__(self, endpoint: str, bucket: str) -> None:
        from obstore.store import S3Store

        self.store = S3Store(
            bucket,
            endpoint=endpoint,
            region=REGION,
            client_options={"allow_http": True},
            virtual_hosted_style_request=False,
        )

    async def start(self) -> None:
        return None

    async def put_small(self, key: str, data: bytes) -> None:
        import obstore

        await obstore.put_async(self.store, key, data, use_multipart=False)

    async def stream(self, key: str, source: AsyncIterator[bytes]) -> None:
        import obstore

        await obstore.put_async(self.store, key, source, chunk_size=PART_SIZE, max_concurrency=2)


class Aiobotocore:
    def __init__(self, endpoint: str, bucket: str) -> None:
        self.bucket = bucket
        self.destination = S3Destination(
            f"s3://{bucket}", endpoint_url=endpoint, region=REGION, max_uploads=CONCURRENCY
        )

    async def start(self) -> None:
        await self.destination.start()

    async def put_small(self, key: str, data: bytes) -> None:
        # One PutObject, as obstore's: the handler's sidecar would be a second one for both.
        client = self.destination._client
        await client.put_object(Bucket=self.bucket, Key=key, Body=data, Metadata={"k": "v"})

    async def stream(self, key: str, source: AsyncIterator[bytes]) -> None:
        body = Body(source, 1 << 40)
        await self.destination.save(
            Names("bench", key),
            body,
            "audio/vnd.wave",
            {},
            lambda b: (b"{}", {"bytes": str(b.size)}),
        )


async def child(library: str, endpoint: str, bucket: str, megabytes: int) -> dict[str, Any]:
    from aiobotocore.session import get_session

    client: Any = Obstore(endpoint, bucket) if library == "obstore" else None
    client = client or Aiobotocore(endpoint, bucket)
    await client.start()
    data = os.urandom(SMALL)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def put(n: int) -> None:
        async with gate:
            await client.put_small(f"small-{n}.wav", data)

    started = time.perf_counter()
    await asyncio.gather(*(put(n) for n in range(COUNT)))
    small_seconds = time.perf_counter() - started
    before = peak_kib()
    started = time.perf_counter()
    await client.stream("large.wav", chunks(megabytes << 20))
    large_seconds = time.perf_counter() - started
    after = peak_kib()
    failed = ""
    try:
        await client.stream("broken.wav", chunks(64 << 20, fail_at=20 << 20))
    except Exception as exc:
        failed = type(exc).__name__
    async with get_session().create_client("s3", endpoint_url=endpoint) as s3:
        uploads = (await s3.list_multipart_uploads(Bucket=bucket)).get("Uploads", [])
        upload = asyncio.create_task(client.stream("cancelled.wav", chunks(64 << 20)))
        # Polled: the store offers nothing to wait on.
        while not (await s3.list_multipart_uploads(Bucket=bucket)).get("Uploads"):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a few parts in
        upload.cancel()
        await asyncio.gather(upload, return_exceptions=True)
        await asyncio.sleep(2)  # anything the library still does in the background
        left = (await s3.list_multipart_uploads(Bucket=bucket)).get("Uploads", [])
        head = await s3.head_object(Bucket=bucket, Key=_key(library, "large.wav"))
    return {
        "small_per_s": COUNT / small_seconds,
        "large_mb_per_s": megabytes * 1.048576 / large_seconds,
        "peak_before_mb": before / 1024,
        "peak_after_mb": after / 1024,
        "large_bytes_ok": head["ContentLength"] == megabytes << 20,
        "failure": failed,
        "open_uploads_after_failure": len(uploads),
        "open_uploads_after_cancel": len(left),
    }


def _key(library: str, name: str) -> str:
    return name if library == "obstore" else f"bench/{name}"


def parent(megabytes: int) -> None:
    os.environ.update(CREDENTIALS, AWS_REGION=REGION)
    with moto_server() as endpoint:
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        for library in ("aiobotocore", "obstore"):
            bucket = f"bench-{library}-{uuid.uuid4().hex[:8]}"
            s3.create_bucket(Bucket=bucket)
            done = subprocess.run(
                [sys.executable, __file__, "--child", library, endpoint, bucket, str(megabytes)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                sys.exit(f"{library} failed:\n{done.stderr[-3000:]}")
            r = json.loads(done.stdout.splitlines()[-1])
            print(
                f"{library:12} 200x1MB: {r['small_per_s']:6.1f}/s  "
                f"{megabytes} MB streamed: {r['large_mb_per_s']:6.1f} MB/s, complete "
                f"{r['large_bytes_ok']}, peak RSS {r['peak_before_mb']:.0f} -> "
                f"{r['peak_after_mb']:.0f} MB  failed upload ({r['failure']}): "
                f"{r['open_uploads_after_failure']} multipart upload(s) left open, "
                f"cancelled upload: {r['open_uploads_after_cancel']} left open"
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        lib, url, name, size = sys.argv[2:6]
        print(json.dumps(asyncio.run(child(lib, url, name, int(size)))))
    else:
        parent(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
