"""The [kafka] security keys: start-up validation naming the key, and the password kept secret."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
import trustme
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import SaslAuthenticationFailed

from consumer.cli.main import main
from consumer.devkit.broker import free_port
from consumer.errors import KafkaConnectError
from consumer.kafka import connection
from consumer.kafka.connection import connect_error
from consumer.kafka.security import checked, client_options
from consumer.secret import Secret
from consumer.settings.config import KafkaSettings, Settings, load_settings
from tests._support.kafka_helpers import REPO

PASSWORD = "pw-7f3a9c1e-never-shown"
SASL = 'security_protocol = "SASL_SSL"\nsasl_mechanism = "SCRAM-SHA-512"\nsasl_username = "u"\n'


@pytest.fixture
def pems(tmp_path: Path) -> dict[str, str]:
    """PEM files: a CA, a client certificate and its key, another key, and a non-PEM file."""
    ca = trustme.CA()
    leaf, stranger = ca.issue_cert("client@test"), ca.issue_cert("other@test")
    files = {
        "ca": ca.cert_pem,
        "cert": leaf.cert_chain_pems[0],
        "key": leaf.private_key_pem,
        "other_key": stranger.private_key_pem,
    }
    paths = {}
    for name, blob in files.items():
        blob.write_to_path(str(tmp_path / f"{name}.pem"))
        paths[name] = str(tmp_path / f"{name}.pem")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    paths["junk"] = str(tmp_path / "junk.pem")
    paths["missing"] = str(tmp_path / "missing.pem")
    return paths


BAD_COMBINATIONS = {
    "sasl without mechanism": ('security_protocol = "SASL_SSL"\n', "kafka.sasl_mechanism"),
    "sasl without username": (
        'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\n',
        "kafka.sasl_username",
    ),
    "sasl without password": (SASL, "kafka.sasl_password"),
    "password and password file": (
        SASL + 'sasl_password = "p"\nsasl_password_file = "{ca}"\n',
        "kafka.sasl_password_file",
    ),
    "missing password file": (
        SASL + 'sasl_password_file = "{missing}"\n',
        "kafka.sasl_password_file",
    ),
    "mechanism without sasl protocol": ('sasl_mechanism = "PLAIN"\n', "kafka.sasl_mechanism"),
    "mechanism with ssl only": (
        'security_protocol = "SSL"\nsasl_mechanism = "PLAIN"\n',
        "kafka.sasl_mechanism",
    ),
    "unknown mechanism": (
        'security_protocol = "SASL_SSL"\nsasl_mechanism = "GSSAPI"\n',
        "kafka.sasl_mechanism",
    ),
    "unknown protocol": ('security_protocol = "TLS"\n', "kafka.security_protocol"),
    "ca file without tls": ('ssl_cafile = "{ca}"\n', "kafka.ssl_cafile"),
    "missing ca file": (
        'security_protocol = "SSL"\nssl_cafile = "{missing}"\n',
        "kafka.ssl_cafile",
    ),
    "ca file not pem": ('security_protocol = "SSL"\nssl_cafile = "{junk}"\n', "kafka.ssl_cafile"),
    "missing cert file": (
        'security_protocol = "SSL"\nssl_certfile = "{missing}"\nssl_keyfile = "{key}"\n',
        "kafka.ssl_certfile",
    ),
    "unreadable key file": (
        'security_protocol = "SSL"\nssl_certfile = "{cert}"\nssl_keyfile = "{tmp}"\n',
        "kafka.ssl_keyfile",
    ),
    "key without cert": ('security_protocol = "SSL"\nssl_keyfile = "{key}"\n', "kafka.ssl_keyfile"),
    "key not the cert's": (
        'security_protocol = "SSL"\nssl_certfile = "{cert}"\nssl_keyfile = "{other_key}"\n',
        "kafka.ssl_keyfile",
    ),
}


@pytest.mark.parametrize("case", BAD_COMBINATIONS)
def test_bad_combination_exits_2_naming_the_key(
    case: str, pems: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each inconsistent or unusable security setting stops start-up with exit 2 and its key."""
    body, key = BAD_COMBINATIONS[case]
    config = tmp_path / "c.toml"
    config.write_text("[kafka]\n" + body.format(tmp=tmp_path, **pems))
    assert main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"recording-consumer: {key}: "), err


def test_check_config_never_prints_the_password(tmp_path: Path) -> None:
    """check-config shows that a password is set, never the password or the file's content."""
    secret_file = tmp_path / "password"
    secret_file.write_text("file-held-secret-0d9e\n")
    base = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    sasl = {
        "RECORDING_CONSUMER__KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "RECORDING_CONSUMER__KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "RECORDING_CONSUMER__KAFKA__SASL_USERNAME": "svc",
    }
    for secret, extra in [
        (PASSWORD, {"RECORDING_CONSUMER__KAFKA__SASL_PASSWORD": PASSWORD}),
        (
            "file-held-secret-0d9e",
            {"RECORDING_CONSUMER__KAFKA__SASL_PASSWORD_FILE": str(secret_file)},
        ),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "consumer", "check-config"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=base | sasl | extra,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert secret not in result.stdout + result.stderr
        assert '"sasl_password": "***"' in result.stdout


def test_password_file_is_read_once_without_its_newline(tmp_path: Path) -> None:
    """The file's content, less one trailing newline, becomes the password clients are given."""
    secret_file = tmp_path / "password"
    secret_file.write_text(PASSWORD + "\n")
    env = {
        "RECORDING_CONSUMER__KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "RECORDING_CONSUMER__KAFKA__SASL_MECHANISM": "PLAIN",
        "RECORDING_CONSUMER__KAFKA__SASL_USERNAME": "svc",
        "RECORDING_CONSUMER__KAFKA__SASL_PASSWORD_FILE": str(secret_file),
    }
    kafka = checked(load_settings(environ=env), env).kafka
    secret_file.unlink()
    options = client_options(kafka)
    assert options["sasl_plain_password"] == PASSWORD
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == ("PLAIN", "svc")
    assert "ssl_context" not in options


@pytest.mark.parametrize("password", ["12345678", '"quoted"', "true", "[x]"])
def test_password_from_environment_is_taken_verbatim(password: str) -> None:
    """A password that happens to read as TOML (a number, quotes) reaches clients unchanged."""
    env = {
        "RECORDING_CONSUMER__KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "RECORDING_CONSUMER__KAFKA__SASL_MECHANISM": "SCRAM-SHA-256",
        "RECORDING_CONSUMER__KAFKA__SASL_USERNAME": "svc",
        "RECORDING_CONSUMER__KAFKA__SASL_PASSWORD": password,
    }
    assert (
        client_options(checked(load_settings(environ=env), env).kafka)["sasl_plain_password"]
        == password
    )


def test_password_stays_out_of_reprs_and_log_lines() -> None:
    """Settings' repr and str, and a JSON log line carrying them, never contain the password."""
    settings = Settings(kafka=KafkaSettings(sasl_password=Secret(PASSWORD)))
    line = structlog.processors.JSONRenderer(default=repr)(None, "info", {"s": settings})
    for text in (repr(settings), str(settings), line, f"{settings.kafka.sasl_password}"):
        assert PASSWORD not in text


def test_connect_error_masks_a_password_the_broker_echoes() -> None:
    """Even a broker message that quotes the password comes out masked, on one line."""
    kafka = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="svc",
        sasl_password=Secret(PASSWORD),
    )
    error = connect_error(SaslAuthenticationFailed(f"bad\ncredentials {PASSWORD}"), kafka)
    assert PASSWORD not in str(error)
    assert "\n" not in str(error)
    assert "authentication failed for user 'svc' with mechanism PLAIN" in str(error)
    assert error.retryable is False


def test_tls_context_follows_the_settings(pems: dict[str, str]) -> None:
    """The client TLS context verifies against the CA, checks hostnames unless told not to."""
    kafka = KafkaSettings(
        security_protocol="SSL",
        ssl_cafile=pems["ca"],
        ssl_certfile=pems["cert"],
        ssl_keyfile=pems["key"],
        ssl_check_hostname=False,
    )
    context = client_options(kafka)["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is False
    assert len(context.get_ca_certs()) == 1


async def test_refused_connection_is_one_retryable_line() -> None:
    """Nothing listening: a KafkaConnectError saying so in one line, marked worth retrying."""
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    admin = AIOKafkaAdminClient(**client_options(kafka))
    with pytest.raises(KafkaConnectError) as failed:
        await connection.start(admin, kafka)
    assert "connection refused" in str(failed.value)
    assert failed.value.retryable


async def test_bootstrap_errors_are_still_logged_when_another_address_works(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A dead bootstrap address beside a live one: the start succeeds and the dead one is logged."""
    dead = f"127.0.0.1:{free_port()}"
    kafka = KafkaSettings(bootstrap_servers=f"{dead},{kafka_bootstrap}")
    # aiokafka tries the addresses in random order: start until the dead one came first.
    for _ in range(30):
        admin = AIOKafkaAdminClient(**client_options(kafka))
        await connection.start(admin, kafka)
        await admin.close()
        if any(dead in record.getMessage() for record in caplog.records):
            return
    pytest.fail(f"30 starts never logged the dead address {dead}")
