"""The worker and the CLI tools over secured listeners of a real broker: SASL_SSL and mutual TLS.

One secured broker serves the whole session (`secured_kafka`); its PLAINTEXT listener is used
only by the tests themselves, to check what the secured clients did.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from aiokafka.admin import AIOKafkaAdminClient

from consumer.cli.samples import sample_messages
from consumer.deadletters import headers as dl
from consumer.devkit.broker import LocalBroker
from consumer.devkit.broker.security import SCRAM_USER
from consumer.devkit.testing import kafka_round_trip
from consumer.errors import KafkaConnectError
from consumer.kafka import connection
from consumer.kafka.security import client_options
from consumer.settings.config import KafkaSettings
from tests._support.deadletters import dead_letters
from tests._support.kafka_helpers import (
    Recorder,
    committed_and_end,
    read_topic,
    recording_message,
)
from tests._support.secured import CONNECT_DEADLINE, MODES, cli, secured_env, secured_settings


@pytest.mark.parametrize("mode", MODES)
async def test_worker_consumes_and_dead_letters_through_secured_listener(
    secured_kafka: LocalBroker, unique_name: str, mode: str
) -> None:
    """Via SCRAM, PLAIN or mutual TLS: all handled, committed to the end, poison dead-lettered."""
    kafka = secured_settings(secured_kafka.security, mode)
    events = [recording_message(f"r-{mode}-{n}") for n in range(20)]
    poison = (b"poison", b"this is not JSON")
    recorder = Recorder()

    result = await kafka_round_trip(
        kafka, {"rec": recorder}, [*events[:10], poison, *events[10:]], topic=unique_name
    )

    assert sorted(recorder.recording_ids()) == sorted(key.decode() for key, _ in events)
    assert {k: n for k, n in result.outcomes.items() if n} == {"handled": 20, "undecodable": 1}
    plain = secured_kafka.bootstrap
    committed, ends = await committed_and_end(plain, unique_name, unique_name)
    assert committed == ends == {0: 21}
    (dead,) = await read_topic(plain, f"{unique_name}.dlq")
    assert (dead.key, dead.value) == poison
    headers = dict(dead.headers)
    assert headers[dl.ERROR_CLASS] == b"DecodeError"
    assert headers[dl.OFFSET] == b"10"


async def test_produce_dlq_show_and_replay_over_sasl_ssl(
    secured_kafka: LocalBroker, unique_name: str
) -> None:
    """`produce`, `dlq show` and `dlq replay` work over SASL_SSL, the password read from a file."""
    env = secured_env(secured_kafka.security, "scram", password_file=True)
    env["RECORDING_CONSUMER__KAFKA__TOPIC"] = unique_name
    plain = secured_kafka.bootstrap

    produced = cli("produce", "--partitions", "1", env=env)
    assert produced.returncode == 0, produced.stderr
    samples = sample_messages(1)
    assert len(await read_topic(plain, unique_name)) == len(samples)

    dlq_topic = await dead_letters(plain, unique_name)
    shown = cli("dlq", "show", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "4 dead letters" in shown.stderr
    assert [line.split()[2] for line in shown.stdout.splitlines()] == [
        "recordingId=r-1",
        "recordingId=r-2",
        "recordingId=r-3",
        "recordingId=-",
    ]

    replayed = cli("dlq", "replay", "--handler", "download", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 2 dead letters" in replayed.stderr
    back = (await read_topic(plain, unique_name))[len(samples) :]
    assert [r.key for r in back] == [b"r-1", b"r-2"]
    assert all(dict(r.headers)[dl.REPLAYED_FROM].startswith(dlq_topic.encode()) for r in back)


def _cannot_connect(env: dict[str, str], secret: str) -> str:
    """Run the worker, expect exit 1 within the deadline, one line and no secret; the line."""
    result = cli("run", env=env, timeout=CONNECT_DEADLINE)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert secret not in output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("recording-consumer: cannot connect to Kafka at ")
    return line


@pytest.mark.parametrize(
    ("mode", "user", "mechanism"),
    [("scram", SCRAM_USER, "SCRAM-SHA-512"), ("plain", "nobody", "PLAIN")],
    ids=["wrong-password", "unknown-user"],
)
def test_wrong_credentials_exit_with_one_line(
    secured_kafka: LocalBroker, unique_name: str, mode: str, user: str, mechanism: str
) -> None:
    """A wrong password or unknown user: exit 1 in time, one line naming user and mechanism."""
    wrong = "not-the-password-" + unique_name
    env = secured_env(secured_kafka.security, mode) | {
        "RECORDING_CONSUMER__KAFKA__SASL_USERNAME": user,
        "RECORDING_CONSUMER__KAFKA__SASL_PASSWORD": wrong,
    }
    line = _cannot_connect(env, wrong)
    assert f"authentication failed for user '{user}' with mechanism {mechanism}" in line


def test_wrong_ca_exits_with_one_line(
    secured_kafka: LocalBroker, unique_name: str, tmp_path: Path
) -> None:
    """A CA that did not sign the broker's certificate: exit 1, one line, no password shown."""
    security = secured_kafka.security
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    env = secured_env(security, "scram") | {"RECORDING_CONSUMER__KAFKA__SSL_CAFILE": str(other_ca)}
    line = _cannot_connect(env, security.password(SCRAM_USER))
    assert "certificate verify failed: unable to get local issuer certificate" in line
    assert str(other_ca) in line


def test_missing_client_certificate_exits_with_one_line(secured_kafka: LocalBroker) -> None:
    """No client certificate where the SSL listener requires one: exit 1, one line saying so."""
    security = secured_kafka.security
    env = secured_env(security, "mtls")
    del (
        env["RECORDING_CONSUMER__KAFKA__SSL_CERTFILE"],
        env["RECORDING_CONSUMER__KAFKA__SSL_KEYFILE"],
    )
    line = _cannot_connect(env, security.keyfile.read_text().splitlines()[1])
    assert "it may require a client certificate (kafka.ssl_certfile is not set)" in line


async def test_hostname_mismatch_is_named_and_the_check_can_be_turned_off(
    secured_kafka: LocalBroker,
) -> None:
    """A host the certificate does not name fails clearly; ssl_check_hostname=false allows it."""
    security = secured_kafka.security
    # "127.1" reaches 127.0.0.1 but is not a name the broker's certificate holds.
    address = "127.1:" + security.ssl.rsplit(":", 1)[1]
    for check in (True, False):
        kafka = KafkaSettings(
            bootstrap_servers=address,
            security_protocol="SSL",
            ssl_cafile=str(security.cafile),
            ssl_certfile=str(security.certfile),
            ssl_keyfile=str(security.keyfile),
            ssl_check_hostname=check,
        )
        admin = AIOKafkaAdminClient(**client_options(kafka))
        if check:
            with pytest.raises(KafkaConnectError, match="Hostname mismatch") as failed:
                await connection.start(admin, kafka)
            assert not failed.value.retryable
        else:
            await connection.start(admin, kafka)
            try:
                assert isinstance(await admin.list_topics(), list)
            finally:
                await admin.close()
