"""The webhook handler with ``ctx.http`` stood in for by httpx.MockTransport: no server needed.

`run_handler` takes the client the handler gets as ``ctx.http``; a client over a MockTransport
answers from a function and records what was asked.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
from webhook import WebhookHandler, WebhookOptions

from consumer import PermanentFailure, RetryLater, Secret, Skipped, make_event, run_handler

URL = "https://hooks.example.test/recordings"


def webhook() -> WebhookHandler:
    return WebhookHandler(WebhookOptions(url=URL, token=Secret("s3cret")))


def api(
    answer: Callable[[httpx.Request], httpx.Response],
) -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    """A client whose every request `answer` answers; the list fills with the requests made."""
    requests: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return answer(request)

    return httpx.AsyncClient(transport=httpx.MockTransport(record)), requests


async def test_a_complete_recording_is_posted_with_the_token_and_an_idempotency_key() -> None:
    """One POST to the URL: bearer token, idempotency key, the recording's ids as JSON."""
    event = make_event(recording_id="r-1", call_id="c-1")
    http, requests = api(lambda request: httpx.Response(202))
    async with http:
        run = await run_handler(webhook(), event, http=http)
    assert (run.error, run.messages) == (None, ["recording announced"])
    (request,) = requests
    assert (request.method, str(request.url)) == ("POST", URL)
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["idempotency-key"] == "r-1:complete"
    assert json.loads(request.content) == {
        "recordingId": "r-1",
        "subjectId": "c-1",
        "mediaUrl": event.media_url,
    }


async def test_throttling_asks_for_a_retry_after_the_servers_delay() -> None:
    """429 with Retry-After: RetryLater with that many seconds; the worker waits that long."""
    http, _ = api(lambda request: httpx.Response(429, headers={"retry-after": "7"}))
    async with http:
        run = await run_handler(webhook(), make_event(), http=http)
    assert isinstance(run.error, RetryLater)
    assert run.error.delay == 7.0


async def test_an_unreachable_api_is_retried() -> None:
    """A connection failure becomes RetryLater without a delay: the retry policy decides."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    http, requests = api(refuse)
    async with http:
        run = await run_handler(webhook(), make_event(), http=http)
    assert isinstance(run.error, RetryLater)
    assert (run.error.delay, len(requests)) == (None, 1)


async def test_a_rejected_request_fails_permanently() -> None:
    """A 4xx other than 429 cannot get better by retrying: the message is dead-lettered."""
    http, _ = api(lambda request: httpx.Response(422))
    async with http:
        run = await run_handler(webhook(), make_event(), http=http)
    assert isinstance(run.error, PermanentFailure)
    assert str(run.error) == "webhook answered HTTP 422"


async def test_other_statuses_are_skipped_without_a_request() -> None:
    """A partial recording is passed over on purpose: Skipped with its reason, nothing sent."""
    http, requests = api(lambda request: httpx.Response(202))
    async with http:
        run = await run_handler(webhook(), make_event(status="partial"), http=http)
    assert isinstance(run.error, Skipped)
    assert run.skipped == "status partial: only complete recordings are announced"
    assert requests == []
