"""Deletions need proof: a ``deleted`` event removes a stored recording (local directory) only
if its ids match the stored copy's and the local HTTPS stand-in for Bandwidth answers 404 for
the recording's metadata; otherwise it is refused, kept and dead-lettered with the reason."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trustme

from consumer import RetryPolicy
from consumer.deadletters import headers as dl
from consumer.devkit.testing import (
    kafka_round_trip,
    make_conference_event,
    make_event,
    run_handler,
    running,
)
from consumer.errors import PluginError, RetryLater
from consumer.events import ConferenceRecordingAvailable, RecordingEvent
from consumer.handlers.bandwidth import recording_path
from consumer.handlers.deletion import DeletionRefused
from consumer.handlers.download import DownloadHandler
from tests._support.downloads import files, served
from tests._support.tls_server import FakeBandwidth, Reply

"""The download tests' handler factory (local directory, the stand-in's URLs), shared."""


async def stored_then(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    handler: DownloadHandler,
    deleted: RecordingEvent,
    *,
    gone: bool,
    stored: RecordingEvent | None = None,
) -> Exception | None:
    """Download `stored` (default: the default call recording), make Bandwidth forget it if
    `gone`, then run the `deleted` event; the error it raised."""
    async with running(handler):
        first = await run_handler(handler, stored or served(bandwidth), http=http, lifecycle=False)
        assert first.error is None
        if gone:
            bandwidth.media.clear()
        return (await run_handler(handler, deleted, http=http, lifecycle=False)).error


async def test_forged_delete_of_a_recording_bandwidth_still_has_is_refused(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
) -> None:
    """Bandwidth answers 200 for the recording: DeletionRefused, media and sidecar kept."""
    handler = make_handler(on_deleted="delete")
    error = await stored_then(bandwidth, http, handler, make_event(status="deleted"), gone=False)
    assert isinstance(error, DeletionRefused)
    assert "still exists at Bandwidth" in str(error)
    assert len(files(tmp_path / "recordings")) == 2
    (asked,) = bandwidth.metadata_requests
    event = make_event()
    assert asked.path == f"/api/v2{recording_path(event)}"
    assert asked.path.startswith(f"/api/v2/accounts/9900000/calls/{event.call_id}/recordings/")
    assert asked.headers["authorization"].startswith("Bearer ")


@pytest.mark.parametrize(
    "forged",
    [
        make_event(status="deleted", call_id="c-someone-else"),
        make_conference_event(recording_id=make_event().recording_id, status="deleted"),
    ],
    ids=["other-call", "conference-form"],
)
async def test_delete_with_ids_other_than_the_stored_copys_is_refused(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
    forged: RecordingEvent,
) -> None:
    """Gone at Bandwidth, but the event names another call (or a conference) than the stored
    copy was saved for: refused before asking Bandwidth, both files kept."""
    handler = make_handler(on_deleted="delete")
    error = await stored_then(bandwidth, http, handler, forged, gone=True)
    assert isinstance(error, DeletionRefused)
    assert "is not the stored copy's" in str(error)
    assert len(files(tmp_path / "recordings")) == 2
    assert bandwidth.metadata_requests == []


async def test_genuine_delete_removes_media_and_sidecar(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
) -> None:
    """Same ids and a 404 at Bandwidth: both files go."""
    handler = make_handler(on_deleted="delete")
    error = await stored_then(bandwidth, http, handler, make_event(status="deleted"), gone=True)
    assert error is None
    assert files(tmp_path / "recordings") == []


async def test_genuine_conference_delete_asks_the_conference_form(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
) -> None:
    """A conference recording's deletion is proved at its conference metadata path."""
    handler = make_handler(on_deleted="delete")
    stored = served(bandwidth, make_conference_event)
    assert isinstance(stored, ConferenceRecordingAvailable)
    deleted = make_conference_event(status="deleted")
    error = await stored_then(bandwidth, http, handler, deleted, gone=True, stored=stored)
    assert error is None
    assert files(tmp_path / "recordings") == []
    (asked,) = bandwidth.metadata_requests
    assert asked.path.startswith(f"/api/v2/accounts/9900000/conferences/{stored.conference_id}/")


@pytest.mark.parametrize("reply", [Reply(503), Reply(429, headers={"Retry-After": "7"})])
async def test_bandwidth_unsure_is_retried_and_keeps_the_copy(
    bandwidth: FakeBandwidth,
    http: httpx.AsyncClient,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
    reply: Reply,
) -> None:
    """A 5xx or 429 from the metadata endpoint proves nothing: RetryLater, files kept."""
    handler = make_handler(on_deleted="delete")
    async with running(handler):
        stored = await run_handler(handler, served(bandwidth), http=http, lifecycle=False)
        assert stored.error is None
        bandwidth.media.clear()
        bandwidth.script.append(reply)
        run = await run_handler(handler, make_event(status="deleted"), http=http, lifecycle=False)
    assert isinstance(run.error, RetryLater)
    assert len(files(tmp_path / "recordings")) == 2


def test_api_url_must_be_on_an_allowed_host(
    make_handler: Callable[..., DownloadHandler],
) -> None:
    """An api_url whose host is not allowed (or that is not https) stops start-up, naming it."""
    with pytest.raises(PluginError, match=r"^handlers\.download\.api_url: host 'elsewhere'"):
        make_handler(api_url="https://elsewhere/api/v2")
    with pytest.raises(PluginError, match=r"^handlers\.download\.api_url: .* not a plain https"):
        make_handler(api_url="http://voice.bandwidth.com/api/v2")


async def test_forged_delete_through_the_broker_is_dead_lettered_with_the_reason(
    kafka_bootstrap: str,
    bandwidth: FakeBandwidth,
    ca: trustme.CA,
    make_handler: Callable[..., DownloadHandler],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through a real broker and the project's worker: a recording is stored, then a forged
    ``deleted`` event (Bandwidth still has it) arrives: the files stay and the event is on the
    dead-letter topic with DeletionRefused and why; one attempt, not retried."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the worker's own client trusts it
    handler = make_handler(on_deleted="delete")
    events = [served(bandwidth), make_event(status="deleted")]
    async with asyncio.timeout(60):
        result = await kafka_round_trip(
            kafka_bootstrap,
            {"download": handler},
            events,
            retry=RetryPolicy(max_attempts=3, initial_delay=0.01),
        )
    assert result.outcomes["handled"] == 1
    assert result.outcomes["dead_lettered"] == 1
    (dead,) = result.dead_letters
    assert dead.error_class == "DeletionRefused"
    reason = dead.reasons[dl.ERROR_MESSAGE]
    assert reason == "deletion refused: the recording still exists at Bandwidth"
    assert dead.reasons[dl.ATTEMPTS] == "1"
    assert len(files(tmp_path / "recordings")) == 2
