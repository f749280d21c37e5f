"""Secret values never reach a log line or a dead letter's headers through a failure's text."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import structlog

from consumer import Secret
from consumer.deadletters import headers as dl
from consumer.devkit.testing import make_event
from consumer.handlers.bandwidth import OAuth2ClientCredentials
from consumer.redaction import error_message
from tests._support.handler_runs import Finished, publish_events
from tests._support.kafka_helpers import read_topic
from tests._support.tls_server import CLIENT_ID, CLIENT_SECRET, TOKEN_PATH, FakeBandwidth

SECRET = '"quoted-12345"'
"""As given in the environment, quotes included: verbatim, so the quotes are part of it."""


def test_error_text_is_blanked_of_secrets_in_every_spelling() -> None:
    """A live secret is blanked as written and as a str or bytes repr escapes it; once the
    secret is gone it is no longer looked for."""
    secret = Secret("pa'ss\nword-é")
    error = ValueError(f"Illegal header value {('Bearer ' + secret.reveal()).encode()!r}")
    assert error_message(error) == 'Illegal header value b"Bearer ***"'
    assert error_message(RuntimeError(f"got {secret.reveal()!r}")) == 'got "***"'
    assert error_message(RuntimeError(secret.reveal())) == "***"
    del secret
    gc.collect()
    assert error_message(RuntimeError("pa'ss\nword-é")) == "pa'ss\nword-é"


async def test_oauth_tokens_are_blanked_from_error_text(
    bandwidth: FakeBandwidth, http: httpx.AsyncClient
) -> None:
    """The bearer token the download handler obtains is a secret too, as are the credentials
    it was obtained with."""
    auth = OAuth2ClientCredentials(
        Secret(CLIENT_ID), Secret(CLIENT_SECRET), token_url=bandwidth.url(TOKEN_PATH)
    )
    header = await auth.authorization(http, structlog.get_logger())
    token = header.removeprefix("Bearer ")
    text = error_message(RuntimeError(f"Illegal header value b'{header}' ({CLIENT_SECRET})"))
    assert token not in text
    assert CLIENT_SECRET not in text
    assert text == "Illegal header value b'Bearer ***' (***)"


async def test_a_handler_error_quoting_its_secret_is_blanked_in_log_and_dead_letter(
    kafka_bootstrap: str,
    create_topic: Callable[..., Awaitable[None]],
    run_worker: Callable[..., Awaitable[Finished]],
    unique_name: str,
    tmp_path: Path,
) -> None:
    """A worker process whose handler fails with its `Secret` option's value in the message
    (as httpx's ``Illegal header value`` does): the value is in neither the log nor the dead
    letter read back from the broker, whose error header shows ``***`` in its place."""
    module = f"leaky_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "import msgspec\n"
        "from consumer import PermanentFailure, Secret\n"
        "class Options(msgspec.Struct, kw_only=True):\n"
        "    token: Secret\n"
        "class Leaky:\n"
        "    Options = Options\n"
        "    def __init__(self, options):\n"
        "        self.token = options.token\n"
        "    async def handle(self, event, ctx):\n"
        "        value = ('Bearer  ' + self.token.reveal()).encode()\n"
        "        raise PermanentFailure(f'Illegal header value {value!r}')\n"
    )
    await publish_events(kafka_bootstrap, unique_name, [make_event()], create_topic)
    finished = await run_worker(
        unique_name,
        PYTHONPATH=str(tmp_path),
        PLUGINS__PATHS__LEAKY=f"{module}:Leaky",
        ROUTES__DEFAULT='["leaky"]',
        HANDLERS__LEAKY__TOKEN=SECRET,
    )
    assert finished.returncode == 0, finished.output
    (line,) = [m for m in finished.lines("message") if m.get("outcome") == "dead_lettered"]
    assert line["error"] == "PermanentFailure: Illegal header value b'Bearer  ***'"
    assert "quoted-12345" not in finished.output
    (dead,) = await read_topic(kafka_bootstrap, f"{unique_name}.dlq")
    headers = dict(dead.headers)
    assert headers[dl.ERROR_MESSAGE] == b"Illegal header value b'Bearer  ***'"
    assert not any(b"quoted-12345" in value for value in headers.values())
