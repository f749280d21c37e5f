"""The download handler against a real local HTTPS server standing in for Bandwidth."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog.testing
import trustme

from consumer.devkit.testing import make_conference_event, make_event, run_handler, running
from consumer.errors import ConfigError, PermanentFailure, PluginError, RetryLater, Skipped
from consumer.handlers.bandwidth import media_path, token_ttl
from consumer.handlers.download import DownloadHandler
from tests._support.downloads import AUDIO, files, served
from tests._support.tls_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    USERNAME,
    FakeBandwidth,
    Reply,
)

WAVE = {"Content-Type": "audio/vnd.wave"}


async def test_a_json_file_format_does_not_clobber_the_sidecar(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
) -> None:
    """fileFormat "json" keeps media and sidecar apart, and a redelivery downloads nothing."""
    event = served(bandwidth, file_format="json")
    handler = make_handler()
    assert (await run_handler(handler, event, http=http)).error is None
    again = await run_handler(handler, event, http=http)
    assert again.error is None
    root = tmp_path / "recordings" / "9900000"
    assert (root / f"{event.recording_id}.json").read_bytes() == AUDIO
    assert json.loads((root / f"{event.recording_id}.json.json").read_text())["download"]
    assert len(bandwidth.media_requests) == 1


async def test_downloads_file_and_sidecar(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
) -> None:
    """A complete event leaves the media and a sidecar; the media request carries a bearer token."""
    event = served(bandwidth)
    run = await run_handler(make_handler(), event, http=http)
    assert run.error is None
    root = tmp_path / "recordings"
    assert files(root) == [
        f"9900000/{event.recording_id}.wav",
        f"9900000/{event.recording_id}.wav.json",
    ]
    assert (root / "9900000" / f"{event.recording_id}.wav").read_bytes() == AUDIO
    sidecar = json.loads((root / "9900000" / f"{event.recording_id}.wav.json").read_text())
    assert sidecar["event"]["recordingId"] == event.recording_id
    assert sidecar["download"]["bytes"] == len(AUDIO)
    assert sidecar["download"]["contentType"] == "audio/vnd.wave"
    (media,) = bandwidth.media_requests
    assert media.headers["authorization"] == "Bearer token-1"
    assert bandwidth.token_requests[0].body == b"grant_type=client_credentials"
    assert "recording downloaded" in run.messages


async def test_downloads_conference_recording(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
) -> None:
    """A conference recording is fetched from its conference media path."""
    event = served(bandwidth, make_conference_event, file_format="mp3")
    run = await run_handler(make_handler(), event, http=http)
    assert run.error is None
    assert bandwidth.media_requests[0].path.startswith("/api/v2/accounts/9900000/conferences/conf-")
    assert (tmp_path / "recordings" / "9900000" / f"{event.recording_id}.mp3").exists()


async def test_one_token_request_for_many_concurrent_downloads(
    bandwidth: FakeBandwidth, http: httpx.AsyncClient, make_handler: Callable[..., DownloadHandler]
) -> None:
    """Concurrent downloads share one token request, and the cached token serves later ones."""
    events = [served(bandwidth, recording_id=f"r-{n}") for n in range(8)]
    async with running(make_handler()) as handler:
        runs = await asyncio.gather(
            *(run_handler(handler, e, http=http, lifecycle=False) for e in events[:6])
        )
        runs += [await run_handler(handler, e, http=http, lifecycle=False) for e in events[6:]]
    assert [run.error for run in runs] == [None] * 8
    assert len(bandwidth.token_requests) == 1
    assert len(bandwidth.media_requests) == 8


@pytest.mark.parametrize(("lifetime", "tokens"), [(60, 1), (0, 3)])
async def test_short_lived_tokens_serve_half_their_lifetime(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    lifetime: int,
    tokens: int,
) -> None:
    """A 60 s token is reused (not refetched per request); one that has expired is replaced."""
    bandwidth.token_lifetime = lifetime
    async with running(make_handler()) as handler:
        for n in range(3):
            event = served(bandwidth, recording_id=f"r-{n}")
            run = await run_handler(handler, event, http=http, lifecycle=False)
            assert run.error is None
    assert len(bandwidth.token_requests) == tokens


def test_token_ttl_keeps_the_margin_for_long_lived_tokens() -> None:
    """An hour's token is renewed 60 s early; a 60 s one after 30 s; a 100 s one after 50 s."""
    assert [token_ttl(t) for t in (3600, 60, 100, 0)] == [3540, 30, 50, 0]


async def test_token_is_refreshed_after_a_401(
    bandwidth: FakeBandwidth, http: httpx.AsyncClient, make_handler: Callable[..., DownloadHandler]
) -> None:
    """A refused token is replaced and the download retried within the same attempt."""
    async with running(make_handler()) as handler:
        first = await run_handler(
            handler, served(bandwidth, recording_id="r-1"), http=http, lifecycle=False
        )
        bandwidth.revoke_tokens()
        second = await run_handler(
            handler, served(bandwidth, recording_id="r-2"), http=http, lifecycle=False
        )
    assert (first.error, second.error) == (None, None)
    assert len(bandwidth.token_requests) == 2
    assert [r.headers["authorization"] for r in bandwidth.media_requests] == [
        "Bearer token-1",
        "Bearer token-1",
        "Bearer token-2",
    ]


async def test_second_401_retries_later_without_leaking_secrets(
    bandwidth: FakeBandwidth, http: httpx.AsyncClient, make_handler: Callable[..., DownloadHandler]
) -> None:
    """Two 401s in a row ask for a retry; no credential appears in the error or the logs."""
    bandwidth.script += [Reply(401), Reply(401)]
    run = await run_handler(make_handler(), served(bandwidth), http=http)
    assert isinstance(run.error, RetryLater)
    assert len(bandwidth.media_requests) == 2
    text = repr(run.error) + str(run.error) + repr(run.logs)
    for secret in (CLIENT_ID, CLIENT_SECRET, "token-1", "token-2"):
        assert secret not in text


async def test_429_retries_after_the_servers_delay(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
) -> None:
    """429 with Retry-After becomes RetryLater with that many seconds, and leaves no file."""
    bandwidth.script.append(Reply(429, headers={"Retry-After": "7"}))
    run = await run_handler(make_handler(), served(bandwidth), http=http)
    assert isinstance(run.error, RetryLater)
    assert run.error.delay == 7.0
    assert files(tmp_path / "recordings") == []


async def test_500_then_success_across_two_attempts(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
) -> None:
    """A 500 asks for a retry without a delay; the next attempt downloads the recording."""
    bandwidth.script.append(Reply(500))
    event = served(bandwidth)
    async with running(make_handler()) as handler:
        first = await run_handler(handler, event, http=http, lifecycle=False)
        second = await run_handler(handler, event, http=http, attempt=2, lifecycle=False)
    assert isinstance(first.error, RetryLater)
    assert first.error.delay is None
    assert second.error is None
    assert (tmp_path / "recordings" / "9900000" / f"{event.recording_id}.wav").read_bytes() == AUDIO


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_refusals_are_permanent(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    status: int,
) -> None:
    """403, 404 and other client errors are not retried."""
    bandwidth.script.append(Reply(status))
    run = await run_handler(make_handler(), served(bandwidth), http=http)
    assert isinstance(run.error, PermanentFailure)
    assert str(status) in str(run.error)


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "streamed"])
async def test_oversize_is_permanent_and_leaves_nothing(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
    chunked: bool,
) -> None:
    """A body over max_bytes, declared or only counted while streaming, fails and is cleaned up."""
    bandwidth.script.append(Reply(200, bytes(3 << 20), WAVE, chunked=chunked))
    run = await run_handler(make_handler(max_bytes=2 << 20), served(bandwidth), http=http)
    assert isinstance(run.error, PermanentFailure)
    assert "max_bytes" in str(run.error)
    assert files(tmp_path / "recordings") == []


async def test_slow_server_times_out_and_retries_later(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
) -> None:
    """A server slower than `timeout` makes the attempt fail as retryable, leaving no file."""
    bandwidth.script.append(Reply(200, AUDIO, delay=3))
    run = await run_handler(make_handler(timeout=0.3), served(bandwidth), http=http)
    assert isinstance(run.error, RetryLater)
    assert "Timeout" in str(run.error)
    assert files(tmp_path / "recordings") == []


async def test_connection_refused_retries_later(
    bandwidth: FakeBandwidth, http: httpx.AsyncClient, make_handler: Callable[..., DownloadHandler]
) -> None:
    """A host that does not answer makes the attempt retryable."""
    closed = FakeBandwidth(trustme.CA())
    await closed.start()
    await closed.close()
    event = make_event(media_url=closed.url(media_path(make_event())))
    handler = make_handler(allowed_hosts=(closed.host, bandwidth.host))
    run = await run_handler(handler, event, http=http)
    assert isinstance(run.error, RetryLater)


async def test_second_delivery_makes_no_request(
    bandwidth: FakeBandwidth, http: httpx.AsyncClient, make_handler: Callable[..., DownloadHandler]
) -> None:
    """A recording already downloaded is not fetched again, and no token is asked for."""
    event = served(bandwidth)
    await run_handler(make_handler(), event, http=http)
    before = len(bandwidth.requests)
    again = await run_handler(make_handler(), event, http=http)
    assert again.error is None
    assert len(bandwidth.requests) == before
    assert "already downloaded" in again.messages


async def test_complete_replaces_an_earlier_partial(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
) -> None:
    """A partial download does not count as done for the complete event that follows it."""
    partial = served(bandwidth, status="partial")
    await run_handler(make_handler(), partial, http=http)
    bandwidth.script.append(Reply(200, b"complete audio", WAVE))
    run = await run_handler(make_handler(), served(bandwidth, status="complete"), http=http)
    assert run.error is None
    folder = tmp_path / "recordings" / "9900000"
    assert (folder / f"{partial.recording_id}.wav").read_bytes() == b"complete audio"
    assert json.loads((folder / f"{partial.recording_id}.wav.json").read_text())["event"][
        "status"
    ] == ("complete")


async def test_event_without_media_url_is_skipped(
    bandwidth: FakeBandwidth, http: httpx.AsyncClient, make_handler: Callable[..., DownloadHandler]
) -> None:
    """An error or deleted event has nothing to fetch: skipped on purpose, no request."""
    run = await run_handler(make_handler(), make_event(status="error", media_url=None), http=http)
    assert isinstance(run.error, Skipped)
    assert run.skipped == "no mediaUrl, nothing to download"
    assert bandwidth.requests == []


async def test_legacy_basic_auth(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """With auth="basic" the API user's credentials, read from a file here, go with the request."""
    (tmp_path / "password").write_text(PASSWORD + "\n")
    monkeypatch.setenv("BANDWIDTH_USERNAME", USERNAME)
    handler = make_handler(auth="basic", password_file=str(tmp_path / "password"))
    run = await run_handler(handler, served(bandwidth), http=http)
    assert run.error is None
    assert bandwidth.token_requests == []
    assert bandwidth.media_requests[0].headers["authorization"].startswith("Basic ")


async def test_missing_credentials_fail_at_start(
    make_handler: Callable[..., DownloadHandler], monkeypatch: pytest.MonkeyPatch
) -> None:
    """start() names the unset variable and the option to blame, not a value."""
    monkeypatch.delenv("BANDWIDTH_CLIENT_SECRET")
    with pytest.raises(ConfigError, match="BANDWIDTH_CLIENT_SECRET") as caught:
        await make_handler().start()
    assert caught.value.key == "handlers.download.client_secret_env"
    assert CLIENT_ID not in str(caught.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [("token_url", "http://localhost/token"), ("allowed_hosts", ("localhost:https",))],
)
def test_bad_options_fail_at_construction(
    make_handler: Callable[..., DownloadHandler], option: str, value: object
) -> None:
    """A plain-http token URL or an unreadable allow-list entry is refused before start."""
    with pytest.raises(PluginError, match=option):
        make_handler(**{option: value})


REJECTED = {
    "http scheme": lambda s, p: f"http://{s.host}{p}",
    "other host": lambda s, p: f"https://example.com{p}",
    "other port": lambda s, p: f"https://localhost:{s.port + 1}{p}",
    "no port": lambda s, p: f"https://localhost{p}",
    "user info": lambda s, p: f"https://user:pw@{s.host}{p}",
    "query": lambda s, p: f"{s.url(p)}?x=1",
    "other recording": lambda s, p: s.url(p.replace("/recordings/r-", "/recordings/r-other-")),
    "metadata path": lambda s, p: s.url(p.removesuffix("/media")),
    "dot segments": lambda s, p: s.url(p.replace("/recordings/", "/recordings/../recordings/")),
    "docs placeholder": lambda s, p: "https://../{accountId}/calls/{callId-1}/recordings/x/media",
}


@pytest.mark.parametrize("make_url", REJECTED.values(), ids=REJECTED.keys())
async def test_rejected_urls_make_no_request(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    make_url: Callable[[FakeBandwidth, str], str],
) -> None:
    """A mediaUrl that is not this event's media on an allowed https host is never contacted."""
    event = make_event()
    run = await run_handler(
        make_handler(), make_event(media_url=make_url(bandwidth, media_path(event))), http=http
    )
    assert isinstance(run.error, PermanentFailure)
    assert (bandwidth.connections, bandwidth.requests) == (0, [])


@pytest.mark.parametrize(
    "overrides",
    [
        {"recording_id": ".."},
        {"account_id": "../etc"},
        {"call_id": "c/1"},
        {"file_format": "../x"},
        {"recording_id": "r-1\n"},
    ],
    ids=["dotdot", "traversal", "separator", "format", "newline"],
)
async def test_bad_identifiers_make_no_request(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
    overrides: dict[str, str],
) -> None:
    """Ids that could escape the directory fail permanently, whatever the URL says."""
    fields = {"account_id": "9900000", "call_id": "c-1", "recording_id": "r-1"} | overrides
    template = "/api/v2/accounts/{account_id}/calls/{call_id}/recordings/{recording_id}/media"
    event = make_event(**fields, media_url=bandwidth.url(template.format_map(fields)))
    run = await run_handler(make_handler(), event, http=http)
    assert isinstance(run.error, PermanentFailure)
    assert (bandwidth.connections, bandwidth.requests) == (0, [])
    assert not (tmp_path / "recordings").exists()


async def test_symlinked_account_folder_is_refused(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
) -> None:
    """<directory>/<accountId> planted as a symlink out of the root: nothing is written there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "9900000").symlink_to(outside)
    run = await run_handler(make_handler(), served(bandwidth), http=http)
    assert isinstance(run.error, PermanentFailure)
    assert "is a symlink or not a directory" in str(run.error)
    assert list(outside.iterdir()) == []
    assert bandwidth.requests == []


@pytest.mark.parametrize(
    ("file_format", "headers"),
    [("wav", {"Content-Type": "text/html; charset=utf-8"}), ("mp3", WAVE), ("wav", {})],
    ids=["html", "other-format", "none"],
)
async def test_unexpected_content_type_is_retryable_and_saves_nothing(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
    file_format: str,
    headers: dict[str, str],
) -> None:
    """A 200 that is not audio of the asked format is not the recording: RetryLater, no file."""
    bandwidth.script.append(Reply(200, b"<html>maintenance</html>", headers))
    run = await run_handler(make_handler(), served(bandwidth, file_format=file_format), http=http)
    assert isinstance(run.error, RetryLater)
    assert f"for a {file_format} recording" in str(run.error)
    assert repr(headers.get("Content-Type", "")) in str(run.error)
    assert files(tmp_path / "recordings") == []


async def test_stale_part_files_are_removed_at_start(
    make_handler: Callable[..., DownloadHandler], tmp_path: Path
) -> None:
    """start() removes old .part files below the root; fresh ones and links are left alone."""
    folder = tmp_path / "recordings" / "9900000"
    folder.mkdir(parents=True)
    stale, fresh = folder / ".r-1.wav.0a1b2c.part", folder / ".r-2.wav.3d4e5f.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    target = tmp_path / "elsewhere.part"
    target.write_bytes(b"not ours")
    os.utime(target, (time.time() - 7200, time.time() - 7200))
    (folder / ".link.wav.000000.part").symlink_to(target)
    await make_handler().start()
    assert sorted(p.name for p in folder.iterdir()) == [".link.wav.000000.part", fresh.name]
    assert target.read_bytes() == b"not ours"


@pytest.mark.parametrize(("on_deleted", "left"), [("keep", 2), ("delete", 0)])
async def test_deleted_event_follows_on_deleted_on_disk(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
    on_deleted: str,
    left: int,
) -> None:
    """on_deleted keeps or removes media and sidecar (once Bandwidth no longer has the
    recording); a second delete of nothing succeeds."""
    event = served(bandwidth)
    handler = make_handler(on_deleted=on_deleted)
    deleted = make_event(status="deleted")
    async with running(handler):
        assert (await run_handler(handler, event, http=http, lifecycle=False)).error is None
        bandwidth.media.clear()
        runs = [await run_handler(handler, deleted, http=http, lifecycle=False) for _ in "12"]
    assert [run.error for run in runs] == [None, None]
    assert len(files(tmp_path / "recordings")) == left
    assert len(bandwidth.media_requests) == 1


def test_directory_is_a_deprecated_alias(
    make_handler: Callable[..., DownloadHandler], tmp_path: Path
) -> None:
    """`directory` alone still works with a warning; with `destination` as well it is refused."""
    with structlog.testing.capture_logs() as logs:
        make_handler()
    assert "handlers.download.directory is deprecated: use handlers.download.destination" in [
        line["event"] for line in logs
    ]
    with pytest.raises(PluginError, match="set only destination"):
        make_handler(destination=str(tmp_path / "elsewhere"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"directory": None, "destination": "gs://bucket/x"}, "neither a path nor s3://"),
        ({"directory": None, "region": "eu-west-1"}, "apply to s3:// destinations only"),
        ({"directory": None, "destination": "s3://"}, "is not s3://bucket/prefix"),
        ({"directory": None, "destination": "s3://b", "max_bytes": 6 << 30}, "max_bytes"),
    ],
    ids=["other-scheme", "region-for-a-path", "no-bucket", "too-large-to-seal"],
)
def test_bad_destinations_fail_at_construction(
    make_handler: Callable[..., DownloadHandler], options: dict[str, Any], message: str
) -> None:
    """An unsupported URL, or S3 options for a directory, are refused before start."""
    with pytest.raises((PluginError, ConfigError), match=message):
        make_handler(**options)
