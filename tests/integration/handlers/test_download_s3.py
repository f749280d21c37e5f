"""The download handler's bucket destination against a real S3-compatible server (moto) on
loopback and the local HTTPS stand-in for Bandwidth; end to end through the real broker."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from aiobotocore.session import get_session

from consumer.deadletters import headers as dl
from consumer.devkit.testing import make_event, run_handler, running
from consumer.errors import ConfigError, PermanentFailure, RetryLater
from consumer.events import RecordingEvent
from consumer.handlers.bandwidth import media_path
from consumer.handlers.deletion import DeletionRefused
from consumer.handlers.download import DownloadHandler, DownloadOptions
from consumer.handlers.s3 import PART_SIZE, _Parts
from tests._support.downloads import AUDIO
from tests._support.handler_runs import Finished, all_committed, publish_events
from tests._support.kafka_helpers import read_topic
from tests._support.s3_store import (
    CREDENTIALS,
    REGION,
    Fault,
    FaultInjector,
    PartBreaker,
    UploadCounter,
    moto_server,
)
from tests._support.tls_server import CLIENT_ID, CLIENT_SECRET, TOKEN_PATH, FakeBandwidth, Reply

LARGE = PART_SIZE * 2 + 12345
"""Three parts of a multipart upload."""

"""The end-to-end tests' worker-process fixture, shared rather than copied."""


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One moto server for the session, started as a child process on a free port."""
    with moto_server() as url:
        yield url


@pytest.fixture
async def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """A client straight to the store, for creating buckets and looking at what was written."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_REGION", REGION)
    async with get_session().create_client("s3", endpoint_url=s3_endpoint) as client:
        yield client


@pytest.fixture
async def bucket(s3: Any) -> str:
    name = f"rec-{uuid.uuid4().hex[:12]}"
    await s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def make_handler(
    bandwidth: FakeBandwidth, s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., DownloadHandler]:
    monkeypatch.setenv("BANDWIDTH_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("BANDWIDTH_CLIENT_SECRET", CLIENT_SECRET)

    def build(**options: Any) -> DownloadHandler:
        defaults: dict[str, Any] = {
            "destination": f"s3://{bucket}/archive",
            "endpoint_url": s3_endpoint,
            "token_url": bandwidth.url(TOKEN_PATH),
            "allowed_hosts": (bandwidth.host,),
            "api_url": bandwidth.url("/api/v2"),
            "timeout": 10.0,
        }
        return DownloadHandler(DownloadOptions(**(defaults | options)))

    return build


def served(bandwidth: FakeBandwidth, audio: bytes = AUDIO, **kw: Any) -> RecordingEvent:
    event = make_event(**kw)
    bandwidth.media[media_path(event)] = audio
    return make_event(**kw, media_url=bandwidth.url(media_path(event)))


async def keys(s3: Any, bucket: str) -> list[str]:
    listed = await s3.list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


async def open_uploads(s3: Any, bucket: str) -> list[str]:
    listed = await s3.list_multipart_uploads(Bucket=bucket)
    return [u["Key"] for u in listed.get("Uploads", [])]


async def test_complete_event_lands_with_metadata_and_sidecar(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    s3: Any,
    bucket: str,
) -> None:
    """Object at <prefix>/<account>/<recording>.wav, content type, metadata, and its sidecar."""
    event = served(bandwidth)
    run = await run_handler(make_handler(), event, http=http)
    assert run.error is None
    media = f"archive/9900000/{event.recording_id}.wav"
    assert await keys(s3, bucket) == [media, media + ".json"]
    head = await s3.head_object(Bucket=bucket, Key=media)
    assert head["ContentType"] == "audio/vnd.wave"
    assert head["Metadata"] == {
        "recordingid": event.recording_id,
        "callid": event.subject_id,
        "accountid": "9900000",
        "fileformat": "wav",
        "duration": "PT70.454S",
        "channels": "1",
        "status": "complete",
        "bytes": str(len(AUDIO)),
        "sha256": hashlib.sha256(AUDIO).hexdigest(),
    }
    got = await s3.get_object(Bucket=bucket, Key=media)
    assert await got["Body"].read() == AUDIO
    sidecar = await s3.get_object(Bucket=bucket, Key=media + ".json")
    record = json.loads(await sidecar["Body"].read())
    assert record["download"]["sha256"] == hashlib.sha256(AUDIO).hexdigest()
    assert record["event"]["recordingId"] == event.recording_id


async def test_large_recording_streams_in_parts_and_is_complete(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    s3: Any,
    bucket: str,
) -> None:
    """A recording of three parts arrives whole, its metadata sealed, no upload left open."""
    audio = bytes(range(251)) * (LARGE // 251)
    event = served(bandwidth, audio)
    run = await run_handler(make_handler(), event, http=http)
    assert run.error is None
    media = f"archive/9900000/{event.recording_id}.wav"
    got = await s3.get_object(Bucket=bucket, Key=media)
    assert hashlib.sha256(await got["Body"].read()).hexdigest() == hashlib.sha256(audio).hexdigest()
    head = await s3.head_object(Bucket=bucket, Key=media)
    assert head["Metadata"]["sha256"] == hashlib.sha256(audio).hexdigest()
    assert head["Metadata"]["bytes"] == str(len(audio)) == str(head["ContentLength"])
    assert await open_uploads(s3, bucket) == []


async def test_parts_are_cut_exactly_into_one_reused_buffer() -> None:
    """Chunks of odd sizes become parts of exactly PART_SIZE bytes (the last one shorter), every
    part a view of the same buffer, which never grows past one part: an upload holds one part
    and no copy of it."""
    data = bytes(range(251)) * (LARGE // 251)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 70_001):
            yield data[start : start + 70_001]

    parts = _Parts(chunks())
    seen, buffers = [], set()
    while part := await parts.next():
        seen.append(bytes(part))
        buffers.add(id(part.obj))
        assert len(part.obj) == PART_SIZE  # type: ignore[arg-type]
    assert [len(p) for p in seen] == [PART_SIZE, PART_SIZE, len(data) - 2 * PART_SIZE]
    assert b"".join(seen) == data
    assert len(buffers) == 1


async def test_concurrent_uploads_never_exceed_max_concurrent_uploads(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    s3: Any,
    s3_endpoint: str,
    bucket: str,
) -> None:
    """Six large recordings handled at once with max_concurrent_uploads = 2: the store never
    has more than two multipart uploads under way (counted at a proxy in front of it, which
    holds completions so that any excess overlaps), and all six land whole."""
    counter = UploadCounter(int(s3_endpoint.rsplit(":", 1)[1]), bound=2)
    await counter.start()
    audio = bytes(range(256)) * (LARGE // 256)
    events = [served(bandwidth, audio, recording_id=f"r-{n}", call_id=f"c-{n}") for n in range(6)]
    handler = make_handler(endpoint_url=counter.url, max_concurrent_uploads=2)
    try:
        async with running(handler):
            runs = await asyncio.gather(
                *(run_handler(handler, event, http=http, lifecycle=False) for event in events)
            )
    finally:
        await counter.close()
    assert [run.error for run in runs] == [None] * 6
    assert 1 <= counter.peak <= 2
    media = [f"archive/9900000/r-{n}.wav" for n in range(6)]
    for key in media:
        assert await (await s3.get_object(Bucket=bucket, Key=key))["Body"].read() == audio
    assert await open_uploads(s3, bucket) == []


async def test_redelivery_makes_no_second_get_and_a_different_copy_is_replaced(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    s3: Any,
    bucket: str,
) -> None:
    """Same event again: no request to Bandwidth. An unsealed object: downloaded and replaced."""
    event = served(bandwidth)
    handler = make_handler()
    async with running(handler):
        assert (await run_handler(handler, event, http=http, lifecycle=False)).error is None
        again = await run_handler(handler, event, http=http, lifecycle=False)
        assert again.error is None
        assert "already downloaded" in again.messages
        assert len(bandwidth.media_requests) == 1
        media = f"archive/9900000/{event.recording_id}.wav"
        await s3.put_object(Bucket=bucket, Key=media, Body=b"someone else's bytes")
        third = await run_handler(handler, event, http=http, lifecycle=False)
    assert third.error is None
    assert "replacing a different stored copy" in third.messages
    assert len(bandwidth.media_requests) == 2
    assert await (await s3.get_object(Bucket=bucket, Key=media))["Body"].read() == AUDIO


async def test_deleted_event_removes_object_and_sidecar(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    s3: Any,
    bucket: str,
) -> None:
    """on_deleted="delete", the ids matching the object's metadata and Bandwidth answering 404:
    both objects go; deleting again (nothing there) succeeds."""
    event = served(bandwidth)
    handler = make_handler(on_deleted="delete")
    deleted = make_event(recording_id=event.recording_id, status="deleted", media_url=None)
    async with running(handler):
        assert (await run_handler(handler, event, http=http, lifecycle=False)).error is None
        assert len(await keys(s3, bucket)) == 2
        bandwidth.media.clear()
        first = await run_handler(handler, deleted, http=http, lifecycle=False)
        second = await run_handler(handler, deleted, http=http, lifecycle=False)
    assert (first.error, second.error) == (None, None)
    assert await keys(s3, bucket) == []
    assert "stored recording deleted" in first.messages
    assert "nothing stored to delete" in second.messages


@pytest.mark.parametrize("size", [len(AUDIO), LARGE], ids=["put", "multipart"])
async def test_forged_or_mismatched_delete_keeps_the_objects(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    s3: Any,
    bucket: str,
    size: int,
) -> None:
    """A deleted event for a recording Bandwidth still has, and one naming another call than
    the object's metadata records (though gone at Bandwidth): both DeletionRefused, both
    objects kept."""
    event = served(bandwidth, bytes(range(256)) * (size // 256))
    handler = make_handler(on_deleted="delete")
    forged = make_event(recording_id=event.recording_id, status="deleted", media_url=None)
    other = make_event(recording_id=event.recording_id, call_id="c-other", status="deleted")
    async with running(handler):
        assert (await run_handler(handler, event, http=http, lifecycle=False)).error is None
        still_there = await run_handler(handler, forged, http=http, lifecycle=False)
        bandwidth.media.clear()
        mismatched = await run_handler(handler, other, http=http, lifecycle=False)
    assert isinstance(still_there.error, DeletionRefused)
    assert "still exists at Bandwidth" in str(still_there.error)
    assert isinstance(mismatched.error, DeletionRefused)
    assert "callId is not the stored copy's" in str(mismatched.error)
    assert len(await keys(s3, bucket)) == 2
    assert len(bandwidth.metadata_requests) == 1


async def test_deleted_event_keeps_the_copy_by_default(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    s3: Any,
    bucket: str,
) -> None:
    """on_deleted="keep" (the default): the stored copy stays and nothing is requested."""
    event = served(bandwidth)
    handler = make_handler()
    async with running(handler):
        await run_handler(handler, event, http=http, lifecycle=False)
        deleted = make_event(recording_id=event.recording_id, status="deleted")
        run = await run_handler(handler, deleted, http=http, lifecycle=False)
    assert run.error is None
    assert len(await keys(s3, bucket)) == 2
    assert len(bandwidth.media_requests) == 1


async def test_store_failing_mid_upload_leaves_nothing_and_the_retry_succeeds(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    s3: Any,
    s3_endpoint: str,
    bucket: str,
) -> None:
    """Part uploads cut mid-body: RetryLater, no object, upload aborted; next attempt lands."""
    breaker = PartBreaker(int(s3_endpoint.rsplit(":", 1)[1]), doomed=1)
    await breaker.start()
    audio = bytes(range(256)) * (LARGE // 256)
    event = served(bandwidth, audio)
    try:
        async with running(make_handler(endpoint_url=breaker.url)) as handler:
            first = await run_handler(handler, event, http=http, lifecycle=False)
            assert breaker.cut >= 2  # botocore tried the part again within the attempt
            assert isinstance(first.error, RetryLater)
            assert await keys(s3, bucket) == []
            assert await open_uploads(s3, bucket) == []
            second = await run_handler(handler, event, http=http, attempt=2, lifecycle=False)
    finally:
        await breaker.close()
    assert second.error is None
    media = f"archive/9900000/{event.recording_id}.wav"
    got = await s3.get_object(Bucket=bucket, Key=media)
    assert await got["Body"].read() == audio
    assert await open_uploads(s3, bucket) == []


@pytest.mark.parametrize(
    ("size", "target", "status", "code", "left"),
    [
        (LARGE, r"\.wav\?.*partNumber=", 503, "SlowDown", []),
        # One PutObject: its sidecar goes first (so a sealed object always has one) and stays.
        (len(AUDIO), r"\.wav(\?|$)", 500, "InternalError", [".json"]),
    ],
    ids=["slowdown-on-a-part", "internalerror-on-put"],
)
async def test_store_throttling_or_5xx_is_retry_later_then_lands(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    s3: Any,
    s3_endpoint: str,
    bucket: str,
    size: int,
    target: str,
    status: int,
    code: str,
    left: list[str],
) -> None:
    """The store's 503 SlowDown / 500 InternalError, twice: RetryLater naming the code, no
    media object, no open upload; the next attempt lands the recording whole."""
    fault = Fault("PUT", target, status, code, times=2)
    injector = FaultInjector(int(s3_endpoint.rsplit(":", 1)[1]), fault)
    await injector.start()
    audio = bytes(range(256)) * (size // 256)
    event = served(bandwidth, audio)
    media = f"archive/9900000/{event.recording_id}.wav"
    try:
        async with running(make_handler(endpoint_url=injector.url)) as handler:
            first = await run_handler(handler, event, http=http, lifecycle=False)
            assert isinstance(first.error, RetryLater)
            assert code in str(first.error)
            # botocore tried once more within the attempt, and no more: then the engine decides.
            assert fault.served == 2
            assert await keys(s3, bucket) == [media + suffix for suffix in left]
            assert await open_uploads(s3, bucket) == []
            second = await run_handler(handler, event, http=http, attempt=2, lifecycle=False)
    finally:
        await injector.close()
    assert second.error is None
    assert await (await s3.get_object(Bucket=bucket, Key=media))["Body"].read() == audio
    assert await keys(s3, bucket) == [media, media + ".json"]
    assert await open_uploads(s3, bucket) == []


async def test_access_denied_fails_permanently_naming_it(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    s3: Any,
    s3_endpoint: str,
    bucket: str,
) -> None:
    """403 AccessDenied to every PUT below the account: PermanentFailure naming it, asked once,
    the multipart upload it began aborted."""
    fault = Fault("PUT", "/9900000/", 403, "AccessDenied", times=100)
    injector = FaultInjector(int(s3_endpoint.rsplit(":", 1)[1]), fault)
    await injector.start()
    try:
        handler = make_handler(endpoint_url=injector.url)
        run = await run_handler(handler, served(bandwidth, bytes(LARGE)), http=http)
    finally:
        await injector.close()
    assert isinstance(run.error, PermanentFailure)
    assert "AccessDenied: Access Denied" in str(run.error)
    assert fault.served == 1
    assert await keys(s3, bucket) == []
    assert await open_uploads(s3, bucket) == []


async def test_bandwidth_failing_mid_body_aborts_the_upload(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    s3: Any,
    bucket: str,
) -> None:
    """A media body over max_bytes after two parts were sent: permanent, no object, no upload."""
    bandwidth.script.append(
        Reply(200, bytes(LARGE), {"Content-Type": "audio/vnd.wave"}, chunked=True)
    )
    run = await run_handler(make_handler(max_bytes=LARGE - 1), served(bandwidth), http=http)
    assert isinstance(run.error, PermanentFailure)
    assert await keys(s3, bucket) == []
    assert await open_uploads(s3, bucket) == []


async def test_missing_bucket_fails_start(
    make_handler: Callable[..., DownloadHandler], s3: Any
) -> None:
    """start() writes a probe object: a bucket that does not exist stops the worker."""
    with pytest.raises(ConfigError, match="NoSuchBucket") as caught:
        await make_handler(destination="s3://no-such-bucket-here/x").start()
    assert caught.value.key == "handlers.download.destination"


async def test_bucket_removed_after_start_fails_permanently(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    s3: Any,
    bucket: str,
) -> None:
    """A bucket gone mid-run: the message fails permanently naming NoSuchBucket."""
    async with running(make_handler()) as handler:
        await s3.delete_bucket(Bucket=bucket)
        run = await run_handler(handler, served(bandwidth), http=http, lifecycle=False)
    assert isinstance(run.error, PermanentFailure)
    assert "NoSuchBucket" in str(run.error)


def archiving(
    bandwidth: FakeBandwidth, ca: trustme.CA, tmp_path: Path, bucket: str, endpoint: str
) -> dict[str, str]:
    """A worker's settings routing every status to `download` into `bucket` through `endpoint`."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return {
        "SSL_CERT_FILE": str(ca_file),
        "BANDWIDTH_CLIENT_ID": CLIENT_ID,
        "BANDWIDTH_CLIENT_SECRET": CLIENT_SECRET,
        **CREDENTIALS,
        "AWS_REGION": REGION,
        "ROUTES__DEFAULT": '["download"]',
        "HANDLERS__DOWNLOAD__DESTINATION": f"s3://{bucket}/calls",
        "HANDLERS__DOWNLOAD__ENDPOINT_URL": endpoint,
        "HANDLERS__DOWNLOAD__TOKEN_URL": bandwidth.url(TOKEN_PATH),
        "HANDLERS__DOWNLOAD__ALLOWED_HOSTS": json.dumps([bandwidth.host]),
        "HANDLERS__DOWNLOAD__API_URL": bandwidth.url("/api/v2"),
    }


async def test_worker_archives_redelivers_and_deletes_through_the_broker(
    kafka_bootstrap: str,
    create_topic: Callable[..., Awaitable[None]],
    run_worker: Callable[..., Awaitable[Finished]],
    bandwidth: FakeBandwidth,
    ca: trustme.CA,
    s3: Any,
    s3_endpoint: str,
    bucket: str,
    unique_name: str,
    tmp_path: Path,
) -> None:
    """Events from Kafka land in the bucket; a second group redelivers them without a GET;
    then a genuine deleted event (gone at Bandwidth, ids matching) removes its recording while
    a forged one (Bandwidth still has it) and one with another call's id are dead-lettered
    with the reason and their objects kept."""
    events = [served(bandwidth, recording_id=f"r-{n}", call_id=f"c-{n}") for n in range(3)]
    await publish_events(kafka_bootstrap, unique_name, events, create_topic)
    settings = archiving(bandwidth, ca, tmp_path, bucket, s3_endpoint)
    settings["HANDLERS__DOWNLOAD__ON_DELETED"] = "delete"
    first = await run_worker(unique_name, **settings)
    assert first.returncode == 0, first.output
    await all_committed(kafka_bootstrap, unique_name)
    expected = [f"calls/9900000/r-{n}.wav{s}" for n in range(3) for s in ("", ".json")]
    assert await keys(s3, bucket) == expected
    again = await run_worker(unique_name, KAFKA__GROUP_ID=unique_name + "-again", **settings)
    assert again.returncode == 0, again.output
    assert len(again.lines("already downloaded")) == 3
    assert len(bandwidth.media_requests) == 3
    del bandwidth.media[media_path(events[0])], bandwidth.media[media_path(events[2])]
    deleted = [
        make_event(recording_id="r-0", call_id="c-0", status="deleted", media_url=None),
        make_event(recording_id="r-1", call_id="c-1", status="deleted", media_url=None),
        make_event(recording_id="r-2", call_id="c-forged", status="deleted", media_url=None),
    ]
    await publish_events(kafka_bootstrap, unique_name + "-deleted", deleted, create_topic)
    gone = await run_worker(unique_name + "-deleted", **settings)
    assert gone.returncode == 0, gone.output
    await all_committed(kafka_bootstrap, unique_name + "-deleted")
    assert await keys(s3, bucket) == expected[2:]
    dead = await read_topic(kafka_bootstrap, f"{unique_name}-deleted.dlq")
    reasons = {d.key: dict(d.headers) for d in dead}
    assert reasons.keys() == {b"r-1", b"r-2"}
    assert {r[dl.ERROR_CLASS] for r in reasons.values()} == {b"DeletionRefused"}
    assert reasons[b"r-1"][dl.ERROR_MESSAGE] == (
        b"deletion refused: the recording still exists at Bandwidth"
    )
    assert reasons[b"r-2"][dl.ERROR_MESSAGE] == (
        b"deletion refused: the event's callId is not the stored copy's"
    )


async def test_wrong_bucket_stops_the_worker_with_exit_2(
    kafka_bootstrap: str,
    run_worker: Callable[..., Awaitable[Finished]],
    s3_endpoint: str,
    s3: Any,
    unique_name: str,
) -> None:
    """A bucket that does not exist: exit 2 naming the key, before any message is consumed."""
    finished = await run_worker(
        unique_name,
        BANDWIDTH_CLIENT_ID=CLIENT_ID,
        BANDWIDTH_CLIENT_SECRET=CLIENT_SECRET,
        **CREDENTIALS,
        AWS_REGION=REGION,
        AWS_ENDPOINT_URL=s3_endpoint,
        ROUTES__DEFAULT='["download"]',
        HANDLERS__DOWNLOAD__DESTINATION="s3://no-such-bucket-here/calls",
    )
    assert finished.returncode == 2, finished.output
    assert "handlers.download.destination" in finished.output
    assert "NoSuchBucket" in finished.output


async def test_store_failing_mid_upload_through_the_broker(
    kafka_bootstrap: str,
    create_topic: Callable[..., Awaitable[None]],
    run_worker: Callable[..., Awaitable[Finished]],
    bandwidth: FakeBandwidth,
    ca: trustme.CA,
    s3: Any,
    s3_endpoint: str,
    bucket: str,
    unique_name: str,
    tmp_path: Path,
) -> None:
    """The store cuts the first upload's parts: the engine retries the event, which lands
    whole, with no upload left open and the offset committed."""
    breaker = PartBreaker(int(s3_endpoint.rsplit(":", 1)[1]), doomed=1)
    await breaker.start()
    audio = bytes(range(256)) * (LARGE // 256)
    event = served(bandwidth, audio)
    await publish_events(kafka_bootstrap, unique_name, [event], create_topic)
    try:
        finished = await run_worker(
            unique_name, **archiving(bandwidth, ca, tmp_path, bucket, breaker.url)
        )
    finally:
        await breaker.close()
    assert finished.returncode == 0, finished.output
    retried = [m for m in finished.lines("message") if m.get("outcome") == "retried"]
    assert len(retried) == 1
    assert "object store upload" in retried[0]["error"]
    assert breaker.cut >= 2
    await all_committed(kafka_bootstrap, unique_name)
    media = f"calls/9900000/{event.recording_id}.wav"
    assert await (await s3.get_object(Bucket=bucket, Key=media))["Body"].read() == audio
    assert await open_uploads(s3, bucket) == []
    assert len(bandwidth.media_requests) == 2


async def test_store_errors_through_the_broker_retry_or_dead_letter(
    kafka_bootstrap: str,
    create_topic: Callable[..., Awaitable[None]],
    run_worker: Callable[..., Awaitable[Finished]],
    bandwidth: FakeBandwidth,
    ca: trustme.CA,
    s3: Any,
    s3_endpoint: str,
    bucket: str,
    unique_name: str,
    tmp_path: Path,
) -> None:
    """SlowDown on a part and InternalError on a PUT: retried by the engine until they land;
    AccessDenied: dead-lettered on the first attempt with the code in its headers."""
    faults = {
        "r-slow": Fault("PUT", r"r-slow\.wav\?.*partNumber=", 503, "SlowDown", times=2),
        "r-busy": Fault("PUT", r"r-busy\.wav(\?|$)", 500, "InternalError", times=2),
        "r-denied": Fault("PUT", r"/r-denied\.wav", 403, "AccessDenied", times=100),
    }
    injector = FaultInjector(int(s3_endpoint.rsplit(":", 1)[1]), *faults.values())
    await injector.start()
    large = bytes(range(256)) * (LARGE // 256)
    events = [
        served(bandwidth, large, recording_id="r-slow"),
        served(bandwidth, recording_id="r-busy"),
        served(bandwidth, recording_id="r-denied"),
    ]
    await publish_events(kafka_bootstrap, unique_name, events, create_topic)
    try:
        finished = await run_worker(
            unique_name, **archiving(bandwidth, ca, tmp_path, bucket, injector.url)
        )
    finally:
        await injector.close()
    assert finished.returncode == 0, finished.output
    retried = {
        m["recordingId"]: m["error"]
        for m in finished.lines("message")
        if m.get("outcome") == "retried"
    }
    assert retried.keys() == {"r-slow", "r-busy"}
    assert "SlowDown" in retried["r-slow"]
    assert "InternalError" in retried["r-busy"]
    assert {r: f.served for r, f in faults.items()} == {"r-slow": 2, "r-busy": 2, "r-denied": 1}
    await all_committed(kafka_bootstrap, unique_name)
    stored = [f"calls/9900000/{r}.wav{s}" for r in ("r-busy", "r-slow") for s in ("", ".json")]
    assert await keys(s3, bucket) == stored
    assert await (await s3.get_object(Bucket=bucket, Key=stored[2]))["Body"].read() == large
    assert await open_uploads(s3, bucket) == []
    (dead,) = await read_topic(kafka_bootstrap, f"{unique_name}.dlq")
    headers = dict(dead.headers)
    assert dead.key == b"r-denied"
    assert headers[dl.ERROR_CLASS] == b"PermanentFailure"
    assert b"AccessDenied: Access Denied" in headers[dl.ERROR_MESSAGE]
    assert headers[dl.ATTEMPTS] == b"1"
