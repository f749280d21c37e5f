"""Recordings from a local Bandwidth stand-in into a bucket (moto), through the worker.

Run from the repository root:  .venv/bin/python bench/s3_download.py [count] [megabytes]
(defaults: 200 recordings of 1 MB, and one recording of 200 MB). Uses
``$KAFKA_BOOTSTRAP_SERVERS`` or starts the local broker; starts its own moto server. The fake
Bandwidth (tests/_support/tls_server.py) runs on its own event loop in a thread, so it does not take
turns with the worker's loop.

- throughput: the project's Worker, default engine settings (``max_in_flight`` 100), the
  download handler to ``s3://``, against the same worker downloading to a local directory
  (same Bandwidth, same run): recordings/s and MB/s, first message fetched to last committed.
- memory: ``recording-consumer run --until-idle 2`` as a child process downloading one
  recording of `megabytes` to the bucket, against the same with one 1 MB recording: peak RSS
  (the child's VmHWM, polled). Goal: the large one raises it by less than 50 MB.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import msgspec
import trustme
from _common import Probe, bootstrap, fresh, publish_backlog, time_worker, verdict

from consumer.devkit.testing import make_event
from consumer.handlers.bandwidth import media_path
from consumer.handlers.download import DownloadHandler, DownloadOptions
from consumer.observability.logs import configure_logging
from consumer.settings.config import EngineSettings, KafkaSettings, LoggingSettings, Settings
from tests._support.s3_store import CREDENTIALS, REGION, moto_server
from tests._support.tls_server import CLIENT_ID, CLIENT_SECRET, TOKEN_PATH, FakeBandwidth

REPO = Path(__file__).resolve().parent.parent
PARTITIONS = 6
GOAL_MB = 50


@contextlib.contextmanager
def bandwidth_in_thread(
    ca: trustme.CA,
) -> Iterator[FakeBandwidth]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = FakeBandwidth(ca)
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def backlog(fake: FakeBandwidth, count: int, size: int, tag: str) -> list[tuple[bytes, bytes]]:
    audio = os.urandom(size)
    out = []
    for n in range(count):
        rid, cid = f"r-{tag}-{n}", f"c-{tag}-{n}"
        path = media_path(make_event(recording_id=rid, call_id=cid))
        fake.media[path] = audio
        event = make_event(recording_id=rid, call_id=cid, media_url=fake.url(path))
        out.append((rid.encode(), msgspec.json.encode(event)))
    return out


def options(fake: FakeBandwidth, destination: str, endpoint: str | None) -> DownloadOptions:
    return DownloadOptions(
        destination=destination,
        endpoint_url=endpoint,
        token_url=fake.url(TOKEN_PATH),
        allowed_hosts=(fake.host,),
        api_url=fake.url("/api/v2"),
    )


async def throughput(
    server: str, fake: FakeBandwidth, endpoint: str, bucket: str, count: int
) -> None:
    configure_logging(LoggingSettings(format="json", level="warning"))
    with tempfile.TemporaryDirectory() as directory:
        for name, destination, url in (
            ("local directory", directory, None),
            ("s3 bucket", f"s3://{bucket}/bench", endpoint),
        ):
            topic = fresh("s3-download")
            data = backlog(fake, count, 1 << 20, uuid.uuid4().hex[:6])
            await publish_backlog(server, topic, PARTITIONS, data)
            handler = DownloadHandler(options(fake, destination, url))
            await handler.start()
            probe = Probe(count, then=handler.handle)
            settings = Settings(
                kafka=KafkaSettings(bootstrap_servers=server, topic=topic, group_id=fresh("w")),
                engine=EngineSettings(),
                logging=LoggingSettings(format="json", level="warning"),
                routes={"default": ["probe"]},
            )
            try:
                timing = await time_worker(settings, probe)
            finally:
                await handler.close()
            print(
                f"{name:16} {count} x 1 MB: {timing.rate:6.1f} recordings/s "
                f"({timing.rate * 1.048576:.1f} MB/s), {timing.seconds:.1f} s"
            )


def peak_rss(server: str, fake: FakeBandwidth, endpoint: str, bucket: str, size: int) -> float:
    """Peak RSS in MB of a worker process downloading one recording of `size` bytes."""
    topic = fresh("s3-rss")
    data = backlog(fake, 1, size, uuid.uuid4().hex[:6])
    asyncio.run(publish_backlog(server, topic, 1, data))
    env = (
        os.environ
        | CREDENTIALS
        | {
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint,
            "BANDWIDTH_CLIENT_ID": CLIENT_ID,
            "BANDWIDTH_CLIENT_SECRET": CLIENT_SECRET,
            "KAFKA_BOOTSTRAP_SERVERS": server,
            "RECORDING_CONSUMER__KAFKA__TOPIC": topic,
            "RECORDING_CONSUMER__KAFKA__GROUP_ID": fresh("rss"),
            "RECORDING_CONSUMER__LOGGING__LEVEL": "warning",
            "RECORDING_CONSUMER__ROUTES__COMPLETE": '["download"]',
            "RECORDING_CONSUMER__HANDLERS__DOWNLOAD__DESTINATION": f"s3://{bucket}/rss",
            "RECORDING_CONSUMER__HANDLERS__DOWNLOAD__TOKEN_URL": fake.url(TOKEN_PATH),
            "RECORDING_CONSUMER__HANDLERS__DOWNLOAD__ALLOWED_HOSTS": f'["{fake.host}"]',
            "RECORDING_CONSUMER__HANDLERS__DOWNLOAD__API_URL": fake.url("/api/v2"),
        }
    )
    command = [str(REPO / ".venv/bin/recording-consumer"), "run", "--until-idle", "2"]
    peak = 0
    child = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    status = Path(f"/proc/{child.pid}/status")
    while child.poll() is None:
        with contextlib.suppress(OSError, ValueError, StopIteration):
            hwm = next(line for line in status.read_text().splitlines() if "VmHWM" in line)
            peak = max(peak, int(hwm.split()[1]))
        time.sleep(0.02)
    if child.returncode != 0:
        sys.exit(f"worker exited {child.returncode}")
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    key = f"rss/9900000/{data[0][0].decode()}.wav"
    head = s3.head_object(Bucket=bucket, Key=key)
    if head["ContentLength"] != size:
        sys.exit(f"object is {head['ContentLength']} bytes, not {size}")
    return peak / 1024


def main(count: int, megabytes: int) -> None:
    os.environ.update(
        CREDENTIALS,
        AWS_REGION=REGION,
        BANDWIDTH_CLIENT_ID=CLIENT_ID,
        BANDWIDTH_CLIENT_SECRET=CLIENT_SECRET,
    )
    server = bootstrap()
    ca = trustme.CA()
    with tempfile.NamedTemporaryFile(suffix=".pem") as ca_file:
        ca.cert_pem.write_to_path(ca_file.name)
        # The worker's own httpx client trusts the system's CAs, read from here.
        os.environ["SSL_CERT_FILE"] = ca_file.name
        with moto_server() as endpoint, bandwidth_in_thread(ca) as fake:
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(
                Bucket=bucket
            )
            asyncio.run(throughput(server, fake, endpoint, bucket, count))
            small = peak_rss(server, fake, endpoint, bucket, 1 << 20)
            large = peak_rss(server, fake, endpoint, bucket, megabytes << 20)
    rise = large - small
    print(
        f"worker peak RSS: 1 MB recording {small:.0f} MB, {megabytes} MB recording {large:.0f} MB"
    )
    print(f"rise {rise:.0f} MB; goal < {GOAL_MB} MB: {verdict(rise < GOAL_MB)}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*(args + [200, 200][len(args) :]))
