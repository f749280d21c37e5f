"""What the ingress refuses, and how: against a real ingress process and a real broker, plus the
pure units behind it (the credential check, the refusal log's rate, start-up errors)."""

from __future__ import annotations

import asyncio
import base64
import hmac
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from consumer.cli.main import main
from consumer.ingress import auth, metrics
from consumer.ingress.auth import Credentials
from consumer.ingress.metrics import IngressMetrics, Refusals
from consumer.secret import Secret
from consumer.settings.config import IngressSettings
from tests._support.ingress import (
    AUTH,
    Ingress,
    callback,
    scrape,
    start_ingress,
    stop,
    wait_serving,
)
from tests._support.kafka_helpers import read_topic


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_credentials_are_decided_by_hmac_compare_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """hmac.compare_digest decides (a stand-in that says "equal" lets wrong credentials in): first
    on the whole header as Bandwidth sends it, then, for another spelling of it, on the username
    and the password, both compared even when the username is already wrong."""
    accepted = Credentials("bandwidth", "secret")
    assert accepted.accepts(basic("bandwidth", "secret"))
    assert accepted.accepts("basic  " + basic("bandwidth", "secret")[6:])
    assert not accepted.accepts(basic("bandwidth", "wrong"))
    assert not accepted.accepts(basic("other", "secret"))
    assert not accepted.accepts(None)
    assert not accepted.accepts("Bearer abc")
    assert not accepted.accepts("Basic \udcff")  # undecodable bytes, as aiohttp passes them

    real = hmac.compare_digest
    compared: list[tuple[bytes, bytes]] = []

    def always_equal(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return True

    monkeypatch.setattr("hmac.compare_digest", always_equal)
    assert accepted.accepts(basic("intruder", "guess"))
    sent, expected = basic("intruder", "guess"), basic("bandwidth", "secret")
    assert compared == [(sent.encode(), expected.encode())]

    def recorded(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    compared.clear()
    monkeypatch.setattr("hmac.compare_digest", recorded)
    assert not accepted.accepts(basic("intruder", "guess"))
    assert compared[1:] == [(b"intruder", b"bandwidth"), (b"guess", b"secret")]


UNWORKABLE = [
    ("ACK_TIMEOUT", "nan", "ingress.ack_timeout"),
    ("ACK_TIMEOUT", "-1", "ingress.ack_timeout"),
    ("HEADER_TIMEOUT", "inf", "ingress.header_timeout"),
    ("SHUTDOWN_GRACE", "nan", "ingress.shutdown_grace"),
    ("MAX_BODY_BYTES", "0", "ingress.max_body_bytes"),
    ("LISTEN", "nohost", "ingress.listen"),
    ("LISTEN", '""', "ingress.listen"),
]
"""[ingress] values that parse but cannot work: (variable after INGRESS__, value, key)."""


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({}, "ingress.username"),
        ({"USERNAME": "bw"}, "ingress.password"),
        ({"PASSWORD": "x"}, "ingress.username"),
        (
            {"USERNAME": "bw", "PASSWORD": "x", "PASSWORD_FILE": "/nonexistent"},
            "ingress.password_file",
        ),
        ({"USERNAME": "bw", "PASSWORD_FILE": "/nonexistent/secret"}, "ingress.password_file"),
        ({"USERNAME": "bw", "PASSWORD": "x", "PATH": "callbacks"}, "ingress.path"),
        ({"USERNAME": "bw", "PASSWORD": "x", "ACK_TIMEOUT": "0"}, "ingress.ack_timeout"),
        ({"USERNAME": "bw", "PASSWORD": "x", "LISTEN": "8080"}, "ingress.listen"),
    ],
)
def test_start_up_exits_2_naming_the_key(
    env: dict[str, str],
    key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Missing or conflicting credentials, and values that cannot work, stop `ingest` before it
    serves anything: exit 2, the message names the key."""
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(f"RECORDING_CONSUMER__INGRESS__{name}", value)
    assert main(["ingest"]) == 2
    assert capsys.readouterr().err.startswith(f"recording-consumer: {key}: ")


@pytest.mark.parametrize(("name", "value", "key"), UNWORKABLE)
def test_check_config_refuses_what_ingest_refuses(
    name: str,
    value: str,
    key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """`check-config` exits 2 on the [ingress] values `ingest` would refuse, naming the key and
    the environment variable that set it, so a deploy is caught before it starts."""
    monkeypatch.chdir(tmp_path)
    variable = f"RECORDING_CONSUMER__INGRESS__{name}"
    monkeypatch.setenv(variable, value)
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"recording-consumer: {key}: ")
    assert variable in err


async def test_ingest_refuses_the_same_values(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    """`ingest` exits 2 naming the key on each of those values (in a child process, so a value
    that slipped through fails the test instead of serving forever)."""

    async def exit_and_output(name: str, value: str, case: int) -> tuple[int | None, str]:
        directory = tmp_path / str(case)
        directory.mkdir()
        overrides: dict[str, Any] = {f"INGRESS__{name}": value}
        ingress = start_ingress(kafka_bootstrap, unique_name, directory, **overrides)
        try:
            status = await asyncio.to_thread(ingress.process.wait, 60)
        except subprocess.TimeoutExpired:
            ingress.kill()
            return None, f"still serving with INGRESS__{name}={value}"
        return status, ingress.log.read_text()

    results = await asyncio.gather(
        *(exit_and_output(name, value, i) for i, (name, value, _) in enumerate(UNWORKABLE))
    )
    for (_, _, key), (status, output) in zip(UNWORKABLE, results, strict=True):
        assert status == 2, output
        assert output.splitlines()[-1].startswith(f"recording-consumer: {key}: "), output


async def test_a_port_in_use_exits_2_naming_the_key(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    """A callback or probe port another process holds stops `ingest` with exit 2 and one line
    naming the key, not a traceback."""
    for key, setting in (
        ("ingress.listen", "INGRESS__LISTEN"),
        ("observability.listen", "OBSERVABILITY__LISTEN"),
    ):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            held = f"127.0.0.1:{taken.getsockname()[1]}"
            overrides: dict[str, Any] = {setting: held}
            ingress = start_ingress(kafka_bootstrap, unique_name, tmp_path, **overrides)
            status = await asyncio.to_thread(ingress.process.wait, 60)
        output = ingress.log.read_text()
        assert status == 2, output
        assert output.splitlines()[-1].startswith(
            f"recording-consumer: {key}: cannot listen on {held}"
        ), output
        assert "Traceback" not in output


def test_anonymous_only_when_allowed_and_password_file_read(tmp_path: Path) -> None:
    """allow_anonymous turns the credentials off; a password file is read (newline dropped) and
    a numeric password from the environment stays a string."""
    assert auth.credentials(IngressSettings(allow_anonymous=True)) is None
    secret = tmp_path / "password"
    secret.write_text("12345\n")
    secret.chmod(0o600)
    from_file = auth.credentials(IngressSettings(username="bw", password_file=str(secret)))
    assert from_file is not None
    assert from_file.accepts(basic("bw", "12345"))
    given = auth.credentials(IngressSettings(username="bw", password=Secret("12345")))
    assert given is not None
    assert given.accepts(basic("bw", "12345"))


def test_check_config_masks_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`check-config` prints the [ingress] settings with the password as *** (taken verbatim
    from the environment, digits and all), never the password itself."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECORDING_CONSUMER__INGRESS__USERNAME", "bw")
    monkeypatch.setenv("RECORDING_CONSUMER__INGRESS__PASSWORD", "0123456789")
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert '"password": "***"' in out
    assert "0123456789" not in out


def test_refusals_are_logged_once_per_interval_per_reason_with_a_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every refusal is counted; a reason is logged at most once per LOG_EVERY seconds, the next
    line carrying how many were refused since the last one."""
    now = [1000.0]
    monkeypatch.setattr("time.monotonic", lambda: now[0])
    registry = IngressMetrics(lambda: 0.0, lambda: 0.0, lambda: 0.0)
    refusals = Refusals(registry)
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            refusals.note("unauthorized", "wrong")
        refusals.note("too_large", "big")
        now[0] += metrics.LOG_EVERY
        refusals.note("unauthorized", "wrong")
    lines = [(line["reason"], line["count"]) for line in logs]
    assert lines == [("unauthorized", 1), ("too_large", 1), ("unauthorized", 5)]
    sample = registry.registry.get_sample_value
    assert sample("recording_consumer_ingress_refusals_total", {"reason": "unauthorized"}) == 6


@pytest.fixture
async def ingress(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> AsyncIterator[Ingress]:
    await create_topic(kafka_bootstrap, unique_name)
    running = start_ingress(kafka_bootstrap, unique_name, tmp_path, INGRESS__MAX_BODY_BYTES="2048")
    try:
        await wait_serving(running)
        yield running
    finally:
        running.kill()


TOO_DEEP = b'{"x":' + b"[" * 1000 + b"]" * 1000 + b"}"
"""A JSON object within the fixture's 2,048-byte cap, nested deeper than the decoder recurses."""


async def raw_request(url: str, head: bytes, body_part: bytes) -> tuple[bytes, bool]:
    """Send `head` and `body_part` only; the answer, and whether the server closed after it."""
    host, port = url.split("/")[2].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + body_part)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read(65536)
            closed = await reader.read(1) == b""
        return answer, closed
    finally:
        writer.close()


async def test_refusals_answer_as_documented_and_produce_nothing(
    ingress: Ingress, kafka_bootstrap: str, unique_name: str
) -> None:
    """401 (+ WWW-Authenticate: Basic) without, with wrong or with undecodable credentials; 413
    for a body over the cap, answered without reading the rest; 400 with the reason for
    non-UTF-8, non-JSON and non-object bodies; 405 for GET (saying to POST); 404 for other
    paths whatever the credentials. Each is counted by reason; only the one good callback
    reaches the topic."""
    good = callback("r-good")
    async with httpx.AsyncClient(timeout=30) as client:
        post: Callable[..., Awaitable[httpx.Response]] = client.post
        answers: dict[str, httpx.Response] = {
            "no auth": await post(ingress.url, content=good),
            "wrong auth": await post(ingress.url, content=good, auth=(AUTH[0], "wrong")),
            "auth not ascii": await post(
                ingress.url, content=good, headers={"Authorization": b"Basic \xff\xfe=="}
            ),
            "too large": await post(ingress.url, content=b"{" + b" " * 4096 + b"}", auth=AUTH),
            "not utf-8": await post(ingress.url, content=b'{"a": "\xff"}', auth=AUTH),
            "not json": await post(ingress.url, content=b'{"a": ', auth=AUTH),
            "not object": await post(ingress.url, content=b"[1, 2]", auth=AUTH),
            "too deep": await post(ingress.url, content=TOO_DEEP, auth=AUTH),
            "get": await client.get(ingress.url, auth=AUTH),
            "other path": await post(ingress.url + "x", content=good, auth=AUTH),
            "other path, no auth": await post(ingress.url + "x", content=good),
            "metrics here": await client.get(ingress.url.replace("/callbacks", "/metrics")),
        }
        ok = await post(ingress.url, content=good, auth=AUTH)
        statuses = {name: response.status_code for name, response in answers.items()}
        assert statuses == {
            "no auth": 401,
            "wrong auth": 401,
            "auth not ascii": 401,
            "too large": 413,
            "not utf-8": 400,
            "not json": 400,
            "not object": 400,
            "too deep": 400,
            "get": 405,
            "other path": 404,
            "other path, no auth": 404,
            "metrics here": 404,
        }
        assert answers["no auth"].headers["WWW-Authenticate"].startswith("Basic")
        assert "not UTF-8" in answers["not utf-8"].text
        assert "not JSON" in answers["not json"].text
        assert "not a JSON object" in answers["not object"].text
        assert "nested too deeply" in answers["too deep"].text
        assert "POST" in answers["get"].text
        assert all(r.headers["X-Request-Id"] for r in answers.values())
        assert ok.status_code == 200

        # Announced 10 MB, 1 KB sent: the answer comes without the rest, and the connection ends.
        head = (
            f"POST /callbacks HTTP/1.1\r\nHost: x\r\nAuthorization: {basic(*AUTH)}\r\n"
            "Content-Length: 10000000\r\n\r\n"
        ).encode()
        answer, closed = await raw_request(ingress.url, head, b"{" + b" " * 1024)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert closed
        # Chunked, no length announced: cut at the cap all the same.
        chunked = head.replace(b"Content-Length: 10000000", b"Transfer-Encoding: chunked")
        chunk = b" " * 3000
        answer, closed = await raw_request(
            ingress.url, chunked, b"%x\r\n%s\r\n" % (len(chunk), chunk)
        )
        assert answer.startswith(b"HTTP/1.1 413 ")

        samples = await scrape(client, ingress.probes)
    refused = {
        reason: samples.get(f'recording_consumer_ingress_refusals_total{{reason="{reason}"}}')
        for reason in (
            "unauthorized",
            "too_large",
            "not_json",
            "not_object",
            "method_not_allowed",
            "not_found",
        )
    }
    assert refused == {
        "unauthorized": 3,
        "too_large": 3,
        "not_json": 3,
        "not_object": 1,
        "method_not_allowed": 1,
        "not_found": 4,  # wait_serving's GET / counts too
    }
    assert samples['recording_consumer_ingress_requests_total{code="200"}'] == 1
    records = await read_topic(kafka_bootstrap, unique_name)
    assert [(r.key, r.value) for r in records] == [(b"r-good", good)]

    assert await stop(ingress) == 0
    logged: list[Any] = [e for e in ingress.events() if e["event"] == "callback refused"]
    assert sorted(e["reason"] for e in logged) == sorted(k for k, v in refused.items() if v)
    assert AUTH[1] not in ingress.log.read_text()


async def test_a_client_that_expects_100_continue_gets_it_before_sending_its_body(
    ingress: Ingress, kafka_bootstrap: str, unique_name: str
) -> None:
    """`Expect: 100-continue` is answered with ``100 Continue`` before the body is sent (a
    client that waits for it would otherwise time out), then 200 and the callback on the topic;
    an announced body over the cap gets 413 without the 100, and another expectation 417."""
    host, port = ingress.url.split("/")[2].split(":")
    good = callback("r-expects")

    def head(length: int, expect: str = "100-continue") -> bytes:
        return (
            f"POST /callbacks HTTP/1.1\r\nHost: x\r\nAuthorization: {basic(*AUTH)}\r\n"
            f"Content-Length: {length}\r\nExpect: {expect}\r\n\r\n"
        ).encode()

    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head(len(good)))
        async with asyncio.timeout(10):
            interim = await reader.readuntil(b"\r\n\r\n")
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(good)
            final = await reader.readuntil(b"\r\n\r\n")
        assert final.startswith(b"HTTP/1.1 200 ")
    finally:
        writer.close()

    too_large, closed = await raw_request(ingress.url, head(10_000_000), b"")
    assert too_large.startswith(b"HTTP/1.1 413 ")
    assert closed
    unknown, closed = await raw_request(ingress.url, head(len(good), "something-else"), b"")
    assert unknown.startswith(b"HTTP/1.1 417 ")
    assert closed

    (record,) = await read_topic(kafka_bootstrap, unique_name)
    assert record.value == good


async def test_an_absolute_form_target_is_the_callback_path(
    ingress: Ingress, kafka_bootstrap: str, unique_name: str
) -> None:
    """``POST http://host/callbacks`` (the absolute form a proxy may send, which RFC 9112 says
    servers must take) is the callback path, not a 404: answered 200 and on the topic."""
    good = callback("r-absolute")
    head = (
        f"POST http://callbacks.example.com/callbacks HTTP/1.1\r\nHost: callbacks.example.com"
        f"\r\nAuthorization: {basic(*AUTH)}\r\nContent-Length: {len(good)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    answer, _ = await raw_request(ingress.url, head, good)
    assert answer.startswith(b"HTTP/1.1 200 ")
    (record,) = await read_topic(kafka_bootstrap, unique_name)
    assert (record.key, record.value) == (b"r-absolute", good)
