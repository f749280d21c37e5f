"""Peak RSS of a worker uploading many large recordings to a bucket at once.

Run from the repository root:
    .venv/bin/python bench/s3_upload_memory.py [count] [megabytes] [max_concurrent_uploads]
(defaults: 40 recordings of 20 MB, `handlers.download.max_concurrent_uploads` not set, so at
its default; run from a checkout without that setting, this measures that checkout's code).

``recording-consumer run --until-idle 2`` (this checkout's code, as a child process) downloads
`count` recordings from the local HTTPS stand-in for Bandwidth
(tests/_support/tls_server.py, on its own event loop in a thread) into a moto server on
loopback. Every recording has its own key, so with the default ``engine.max_in_flight`` (100)
all `count` are handled at once; each is a
multipart upload (over 8 MiB). Printed: the child's peak RSS (VmHWM, polled), and the same for
one 1 MB recording as the baseline, measured in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import trustme
from _common import bootstrap, fresh, publish_backlog
from s3_download import backlog, bandwidth_in_thread

from tests._support.s3_store import CREDENTIALS, REGION, moto_server
from tests._support.tls_server import CLIENT_ID, CLIENT_SECRET, TOKEN_PATH, FakeBandwidth

REPO = Path(__file__).resolve().parent.parent
PARTITIONS = 6


def peak_rss(
    server: str,
    fake: FakeBandwidth,
    endpoint: str,
    bucket: str,
    count: int,
    size: int,
    bound: str | None,
) -> float:
    """Peak RSS in MB of a worker process storing `count` recordings of `size` bytes."""
    topic = fresh("s3-upload-rss")
    data = backlog(fake, count, size, uuid.uuid4().hex[:6])
    asyncio.run(publish_backlog(server, topic, PARTITIONS, data))
    prefix = f"rss-{uuid.uuid4().hex[:6]}"
    settings = {
        "KAFKA__TOPIC": topic,
        "KAFKA__GROUP_ID": fresh("rss"),
        "LOGGING__LEVEL": "warning",
        "ROUTES__COMPLETE": '["download"]',
        "HANDLERS__DOWNLOAD__DESTINATION": f"s3://{bucket}/{prefix}",
        "HANDLERS__DOWNLOAD__TOKEN_URL": fake.url(TOKEN_PATH),
        "HANDLERS__DOWNLOAD__ALLOWED_HOSTS": f'["{fake.host}"]',
    }
    if (REPO / "consumer/handlers/deletion.py").exists():  # a checkout that has api_url
        settings["HANDLERS__DOWNLOAD__API_URL"] = fake.url("/api/v2")
    if bound is not None:
        settings["HANDLERS__DOWNLOAD__MAX_CONCURRENT_UPLOADS"] = bound
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECORDING_CONSUMER__")}
    env |= {f"RECORDING_CONSUMER__{k}": v for k, v in settings.items()}
    env |= {"AWS_ENDPOINT_URL": endpoint, "KAFKA_BOOTSTRAP_SERVERS": server}
    command = [sys.executable, "-m", "consumer", "run", "--until-idle", "2"]
    peak = 0
    with tempfile.TemporaryFile() as output:
        child = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=output)
        status = Path(f"/proc/{child.pid}/status")
        while child.poll() is None:
            with contextlib.suppress(OSError, ValueError, StopIteration):
                hwm = next(line for line in status.read_text().splitlines() if "VmHWM" in line)
                peak = max(peak, int(hwm.split()[1]))
            time.sleep(0.02)
        if child.returncode != 0:
            output.seek(0)
            sys.exit(f"worker exited {child.returncode}:\n{output.read().decode()[-3000:]}")
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    for key, _ in data:
        head = s3.head_object(Bucket=bucket, Key=f"{prefix}/9900000/{key.decode()}.wav")
        if head["ContentLength"] != size:
            sys.exit(f"{key.decode()} is {head['ContentLength']} bytes, not {size}")
    return peak / 1024


def main(count: int, megabytes: int, bound: str | None) -> None:
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
        os.environ["SSL_CERT_FILE"] = ca_file.name  # the worker's httpx client trusts it
        with moto_server() as endpoint, bandwidth_in_thread(ca) as fake:
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(
                Bucket=bucket
            )
            base = peak_rss(server, fake, endpoint, bucket, 1, 1 << 20, bound)
            many = peak_rss(server, fake, endpoint, bucket, count, megabytes << 20, bound)
    print(f"max_concurrent_uploads {bound or 'not set'}; worker peak RSS:")
    print(f"  1 recording of 1 MB:          {base:6.0f} MB")
    print(f"  {count} recordings of {megabytes} MB at once: {many:6.0f} MB")
    print(f"  rise {many - base:.0f} MB, {(many - base) / count:.1f} MB per recording")


if __name__ == "__main__":
    args = sys.argv[1:4]
    main(
        int(args[0]) if args else 40,
        int(args[1]) if len(args) > 1 else 20,
        args[2] if len(args) > 2 else None,
    )
