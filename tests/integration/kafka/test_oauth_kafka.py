"""OAUTHBEARER against a real broker that validates JWTs itself (Kafka's BrokerJwtValidator).

The identity provider is `tests._support.oauth_issuer`: a JWKS document and a client-credentials
token endpoint on loopback. The broker ends each session when its token expires
(``connections.max.reauth.ms`` is set), so clients must bring fresh tokens to stay connected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from consumer.cli.samples import sample_messages
from consumer.deadletters import headers as dl
from consumer.devkit.broker import LocalBroker, free_port
from consumer.devkit.broker.oauth import oauth_broker
from consumer.engine.worker import Worker
from consumer.kafka.security import checked
from consumer.settings.config import EngineSettings, Settings, load_settings
from tests._support.deadletters import dead_letters
from tests._support.kafka_helpers import (
    Recorder,
    committed_and_end,
    exit_status,
    handled_lines,
    read_topic,
    recording_message,
    wait_for,
    worker_process,
)
from tests._support.oauth_issuer import AUDIENCE, Client, Issuer
from tests._support.secured import CONNECT_DEADLINE, cli, secured_env

WORKER = "worker"
SHORT_LIVED = "short-lived"
OTHER_AUDIENCE = "other-audience"
SECRETS = {
    WORKER: "worker-secret-5b1e0c",
    SHORT_LIVED: "short-secret-93aa41",
    OTHER_AUDIENCE: "other-secret-1d7f22",
}
PREFIX = "RECORDING_CONSUMER__KAFKA__"


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    """The identity provider, with a worker client, a 5 s one and one for another audience."""
    issuer = Issuer()
    issuer.clients |= {
        WORKER: Client(SECRETS[WORKER]),
        SHORT_LIVED: Client(SECRETS[SHORT_LIVED], lifetime=5),
        OTHER_AUDIENCE: Client(SECRETS[OTHER_AUDIENCE], audience="some-other-service"),
    }
    issuer.start()
    yield issuer
    issuer.close()


@pytest.fixture(scope="module")
def oauth_kafka(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A secured broker whose SASL_SSL listener also takes OAUTHBEARER tokens from `issuer`."""
    options = oauth_broker(issuer.jwks_url, issuer.token_url, AUDIENCE)
    state = tmp_path_factory.mktemp("oauth-kafka")
    with LocalBroker(state, port=free_port(), secured=True, **options) as broker:
        yield broker


def oauth_env(broker: LocalBroker, issuer: Issuer, client: str, **extra: str) -> dict[str, str]:
    """The environment a user would set to reach `broker` as `client` (secret given inline)."""
    env = secured_env(broker.security, "scram")
    for key in ("SASL_USERNAME", "SASL_PASSWORD"):
        del env[PREFIX + key]
    return env | {
        PREFIX + "SASL_MECHANISM": "OAUTHBEARER",
        PREFIX + "SASL_OAUTH_TOKEN_ENDPOINT_URL": issuer.token_url,
        PREFIX + "SASL_OAUTH_CLIENT_ID": client,
        PREFIX + "SASL_OAUTH_CLIENT_SECRET": SECRETS.get(client, "?"),
        PREFIX + "SASL_OAUTH_SCOPE": "kafka",
        **{PREFIX + k.upper(): v for k, v in extra.items()},
    }


async def test_worker_process_consumes_and_dead_letters_over_oauthbearer(
    oauth_kafka: LocalBroker, issuer: Issuer, unique_name: str, tmp_path: Path
) -> None:
    """`recording-consumer run` over OAUTHBEARER: all handled and committed, poison dead-lettered,
    the secret in none of its output."""
    plain = oauth_kafka.bootstrap
    events = [recording_message(f"r-{n}") for n in range(10)]
    poison = (b"poison", b"this is not JSON")
    producer = AIOKafkaProducer(bootstrap_servers=plain)
    await producer.start()
    try:
        for key, value in [*events[:5], poison, *events[5:]]:
            await producer.send_and_wait(unique_name, value, key=key)
    finally:
        await producer.stop()
    handled = tmp_path / "handled"
    env = oauth_env(oauth_kafka, issuer, WORKER)
    settings = {k.removeprefix("RECORDING_CONSUMER__"): v for k, v in env.items()}
    bootstrap = settings.pop("KAFKA_BOOTSTRAP_SERVERS")
    before = issuer.requests[WORKER]

    worker = worker_process(bootstrap, unique_name, handled, until_idle=3, **settings)
    assert await exit_status(worker, 90) == 0

    assert len(handled_lines(handled)) == 10
    committed, ends = await committed_and_end(plain, unique_name, unique_name)
    assert committed == ends == {0: 11}
    (dead,) = await read_topic(plain, f"{unique_name}.dlq")
    assert (dead.key, dead.value) == poison
    assert dict(dead.headers)[dl.OFFSET] == b"5"
    output = handled.with_name("handled.log").read_text()
    assert SECRETS[WORKER] not in output
    # One process, one token for its consumer, producer and admin clients.
    assert issuer.requests[WORKER] - before == 1


async def test_produce_and_dlq_tools_over_oauthbearer(
    oauth_kafka: LocalBroker, issuer: Issuer, unique_name: str, tmp_path: Path
) -> None:
    """`produce`, `dlq show` and `dlq replay` over OAUTHBEARER, the secret read from a file."""
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(SECRETS[WORKER] + "\n")
    secret_file.chmod(0o600)
    env = oauth_env(oauth_kafka, issuer, WORKER, topic=unique_name)
    del env[PREFIX + "SASL_OAUTH_CLIENT_SECRET"]
    env[PREFIX + "SASL_OAUTH_CLIENT_SECRET_FILE"] = str(secret_file)
    plain = oauth_kafka.bootstrap

    produced = cli("produce", "--partitions", "1", env=env)
    assert produced.returncode == 0, produced.stderr
    assert len(await read_topic(plain, unique_name)) == len(sample_messages(1))

    dlq_topic = await dead_letters(plain, unique_name)
    shown = cli("dlq", "show", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "4 dead letters" in shown.stderr
    replayed = cli("dlq", "replay", "--handler", "download", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 2 dead letters" in replayed.stderr
    back = (await read_topic(plain, unique_name))[len(sample_messages(1)) :]
    assert [r.key for r in back] == [b"r-1", b"r-2"]
    assert all(dict(r.headers)[dl.REPLAYED_FROM].startswith(dlq_topic.encode()) for r in back)
    for result in (produced, shown, replayed):
        assert SECRETS[WORKER] not in result.stdout + result.stderr


def _refused(env: dict[str, str], secret: str) -> str:
    """`recording-consumer run` with `env`: exit 1 within the deadline, one line, no secret."""
    result = cli("run", env=env, timeout=CONNECT_DEADLINE)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert secret not in output
    assert "Traceback" not in output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("recording-consumer: cannot connect to Kafka at "), line
    return line


def test_wrong_client_secret_exits_with_one_line(
    oauth_kafka: LocalBroker, issuer: Issuer, unique_name: str
) -> None:
    """A secret the token endpoint refuses: exit 1, one line naming endpoint and OAuth error."""
    wrong = "not-the-secret-" + unique_name
    env = oauth_env(oauth_kafka, issuer, WORKER, sasl_oauth_client_secret=wrong)
    line = _refused(env, wrong)
    assert (
        f"OAuth token endpoint {issuer.token_url} (client 'worker'): "
        "HTTP 401 invalid_client: bad client credentials"
    ) in line


def test_token_for_another_audience_exits_with_one_line(
    oauth_kafka: LocalBroker, issuer: Issuer
) -> None:
    """A token the broker's validator rejects (wrong audience): exit 1, one line saying so."""
    env = oauth_env(oauth_kafka, issuer, OTHER_AUDIENCE)
    before = issuer.requests[OTHER_AUDIENCE]
    line = _refused(env, SECRETS[OTHER_AUDIENCE])
    assert issuer.requests[OTHER_AUDIENCE] > before  # the endpoint gave it a token
    assert f"the broker rejected the token of client {OTHER_AUDIENCE!r}" in line


STREAM_SECONDS = 20.0
"""How long the short-lived-token test streams: four lifetimes of its 5 s tokens."""


class _Authentications(logging.Handler):
    """Counts aiokafka's successful OAUTHBEARER authentications: one per connection made."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.getMessage() == "Authenticated via OAUTHBEARER"


async def test_short_lived_tokens_are_refreshed_without_a_reconnect_storm(
    oauth_kafka: LocalBroker,
    issuer: Issuer,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
) -> None:
    """5 s tokens over a 20 s stream: the broker ends each session as its token expires and the
    clients come back with fresh ones; nothing is lost, and tokens and connections stay few."""
    plain = oauth_kafka.bootstrap
    await create_topic(plain, unique_name, 2)
    env = oauth_env(oauth_kafka, issuer, SHORT_LIVED, topic=unique_name, group_id=unique_name)
    kafka = checked(load_settings(environ=env), env).kafka
    recorder = Recorder()
    settings = Settings(
        kafka=kafka, engine=EngineSettings(commit_interval=0.2), routes={"default": ["rec"]}
    )
    worker = Worker(settings, {"rec": recorder})
    conn_log = logging.getLogger("aiokafka.conn")
    authentications, level = _Authentications(), conn_log.level
    conn_log.addHandler(authentications)
    conn_log.setLevel(logging.INFO)
    tokens_before = issuer.requests[SHORT_LIVED]
    producer = AIOKafkaProducer(bootstrap_servers=plain)
    await producer.start()
    sent: list[bytes] = []
    try:
        run = asyncio.create_task(worker.run())
        deadline = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < deadline:
            key, value = recording_message(f"r-{len(sent)}")
            await producer.send_and_wait(unique_name, value, key=key)
            sent.append(key)
            await asyncio.sleep(0.1)
        await wait_for(lambda: len(recorder.seen) >= len(sent) or run.done(), 30, "all handled")
        worker.stop()
        await run
    finally:
        await producer.stop()
        conn_log.removeHandler(authentications)
        conn_log.setLevel(level)

    assert sorted(recorder.recording_ids()) == sorted(key.decode() for key in sent)
    committed, ends = await committed_and_end(plain, unique_name, unique_name)
    assert committed == ends
    tokens = issuer.requests[SHORT_LIVED] - tokens_before
    figures = f"{tokens} token requests, {authentications.count} connections"
    # Refreshed (one token would have ended every session after 5 s), at most once per 4 s
    # (80% of 5 s) plus the first. Measured here: 4 over a 21 s run.
    assert 3 <= tokens <= STREAM_SECONDS / 4 + 2, figures
    # Every session ends with its token, so each connection comes back about every 5 s: a few
    # connections times four lifetimes (measured: 15). A reconnect storm would be hundreds.
    assert 2 * STREAM_SECONDS / 5 <= authentications.count <= 10 * STREAM_SECONDS / 5, figures


@pytest.mark.parametrize("credentials", [False, True], ids=["no-credentials", "credentials"])
def test_msk_iam_against_a_broker_that_is_not_msk(
    oauth_kafka: LocalBroker, tmp_path: Path, credentials: bool
) -> None:
    """AWS_MSK_IAM, run as a user would: without AWS credentials, one line saying so; with
    them, the presigned token reaches the broker over OAUTHBEARER, which (not being MSK)
    rejects it, in one line. Exit 1 either way, the secret key never shown."""
    env = secured_env(oauth_kafka.security, "scram")
    for key in ("SASL_USERNAME", "SASL_PASSWORD"):
        del env[PREFIX + key]
    secret_key = "aws-secret-key-0c9d1e"
    env |= {
        PREFIX + "SASL_MECHANISM": "AWS_MSK_IAM",
        "AWS_REGION": "eu-west-3",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE0000TEST1" if credentials else "",
        "AWS_SECRET_ACCESS_KEY": secret_key if credentials else "",
    }
    line = _refused(env, secret_key)
    if credentials:
        assert "the broker rejected the AWS MSK IAM token for region eu-west-3" in line
    else:
        assert "AWS MSK IAM (region eu-west-3): no AWS credentials found" in line
