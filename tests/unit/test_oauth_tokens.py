"""OAUTHBEARER and AWS MSK IAM settings and token providers, without a broker.

Client-credentials tokens come from `tests._support.oauth_issuer`, a real HTTP token endpoint on
loopback; MSK IAM tokens are built by AWS's signer from credentials in the environment and
decoded here, since there is no MSK to present them to.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import structlog

from consumer.cli.main import main
from consumer.kafka import oauth
from consumer.kafka.msk_iam import MskIamTokens
from consumer.kafka.oauth import ClientCredentialsTokens, TokenError
from consumer.kafka.security import checked, client_options, token_provider
from consumer.secret import Secret
from consumer.settings.config import load_settings
from tests._support.kafka_helpers import REPO
from tests._support.oauth_issuer import Client, Issuer

SECRET = "oauth-secret-4e1f9a-never-shown"
OAUTH = (
    'security_protocol = "SASL_SSL"\nsasl_mechanism = "OAUTHBEARER"\n'
    'sasl_oauth_token_endpoint_url = "https://idp.example/token"\nsasl_oauth_client_id = "c"\n'
)
MSK = 'security_protocol = "SASL_SSL"\nsasl_mechanism = "AWS_MSK_IAM"\n'
ACCESS_KEY = "AKIDEXAMPLE0000TEST1"


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    """A token endpoint with one client whose tokens last 60 s."""
    issuer = Issuer()
    issuer.clients["c"] = Client(SECRET, lifetime=60)
    issuer.start()
    yield issuer
    issuer.close()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing of the machine's own AWS set-up is seen, and nothing asks the network."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)


BAD = {
    "no endpoint": (
        'security_protocol = "SASL_SSL"\nsasl_mechanism = "OAUTHBEARER"\n',
        "kafka.sasl_oauth_token_endpoint_url",
    ),
    "no client id": (
        OAUTH.replace('sasl_oauth_client_id = "c"\n', ""),
        "kafka.sasl_oauth_client_id",
    ),
    "no secret": (OAUTH, "kafka.sasl_oauth_client_secret"),
    "secret twice": (
        OAUTH + 'sasl_oauth_client_secret = "s"\nsasl_oauth_client_secret_file = "/f"\n',
        "kafka.sasl_oauth_client_secret_file",
    ),
    "missing secret file": (
        OAUTH + 'sasl_oauth_client_secret_file = "/nonexistent/secret"\n',
        "kafka.sasl_oauth_client_secret_file",
    ),
    "not a url": (
        OAUTH.replace("https://idp.example/token", "idp.example/token")
        + 'sasl_oauth_client_secret = "s"\n',
        "kafka.sasl_oauth_token_endpoint_url",
    ),
    "password with oauth": (
        OAUTH + 'sasl_oauth_client_secret = "s"\nsasl_username = "u"\n',
        "kafka.sasl_username",
    ),
    "oauth keys with scram": (
        'security_protocol = "SASL_SSL"\nsasl_mechanism = "SCRAM-SHA-512"\n'
        'sasl_username = "u"\nsasl_password = "p"\nsasl_oauth_client_id = "c"\n',
        "kafka.sasl_oauth_client_id",
    ),
    "oauth keys without sasl": ('sasl_oauth_scope = "kafka"\n', "kafka.sasl_oauth_scope"),
    "msk without region": (MSK, "kafka.aws_region"),
    "msk without tls": (
        'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "AWS_MSK_IAM"\naws_region = "x"\n',
        "kafka.security_protocol",
    ),
    "msk with a client id": (MSK + 'sasl_oauth_client_id = "c"\n', "kafka.sasl_oauth_client_id"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_token_settings_exit_2_naming_the_key(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each missing or contradictory OAUTHBEARER / AWS_MSK_IAM key stops start-up, named."""
    monkeypatch.delenv("AWS_REGION", raising=False)
    body, key = BAD[case]
    config = tmp_path / "c.toml"
    config.write_text("[kafka]\n" + body)
    assert main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"recording-consumer: {key}: "), err


def test_region_defaults_to_aws_region_and_the_key_wins() -> None:
    """``aws_region`` unset takes ``$AWS_REGION``; set, it is kept."""
    env = {
        "RECORDING_CONSUMER__KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "RECORDING_CONSUMER__KAFKA__SASL_MECHANISM": "AWS_MSK_IAM",
        "AWS_REGION": "eu-west-3",
    }
    assert checked(load_settings(environ=env), env).kafka.aws_region == "eu-west-3"
    env["RECORDING_CONSUMER__KAFKA__AWS_REGION"] = "us-east-2"
    assert checked(load_settings(environ=env), env).kafka.aws_region == "us-east-2"


def test_check_config_never_prints_the_client_secret(tmp_path: Path) -> None:
    """check-config masks the client secret, given inline or in a file."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    base = {
        "PYTHONPATH": str(REPO),
        "PATH": "/usr/bin:/bin",
        "RECORDING_CONSUMER__KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "RECORDING_CONSUMER__KAFKA__SASL_MECHANISM": "OAUTHBEARER",
        "RECORDING_CONSUMER__KAFKA__SASL_OAUTH_TOKEN_ENDPOINT_URL": "https://idp.example/token",
        "RECORDING_CONSUMER__KAFKA__SASL_OAUTH_CLIENT_ID": "svc",
    }
    for extra in (
        {"RECORDING_CONSUMER__KAFKA__SASL_OAUTH_CLIENT_SECRET": SECRET},
        {"RECORDING_CONSUMER__KAFKA__SASL_OAUTH_CLIENT_SECRET_FILE": str(secret_file)},
    ):
        result = subprocess.run(
            [sys.executable, "-m", "consumer", "check-config"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=base | extra,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert SECRET not in result.stdout + result.stderr
        assert '"sasl_oauth_client_secret": "***"' in result.stdout


def test_clients_of_one_process_share_one_provider() -> None:
    """Every client built from the same settings gets the same provider, hence one token."""
    env = {
        "RECORDING_CONSUMER__KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "RECORDING_CONSUMER__KAFKA__SASL_MECHANISM": "OAUTHBEARER",
        "RECORDING_CONSUMER__KAFKA__SASL_OAUTH_TOKEN_ENDPOINT_URL": "https://idp.example/t",
        "RECORDING_CONSUMER__KAFKA__SASL_OAUTH_CLIENT_ID": "shared",
        "RECORDING_CONSUMER__KAFKA__SASL_OAUTH_CLIENT_SECRET": SECRET,
    }
    kafka = checked(load_settings(environ=env), env).kafka
    first, second = client_options(kafka), client_options(kafka)
    assert first["sasl_mechanism"] == "OAUTHBEARER"
    assert first["sasl_oauth_token_provider"] is second["sasl_oauth_token_provider"]
    assert isinstance(token_provider(kafka), ClientCredentialsTokens)


async def test_token_is_cached_and_concurrent_callers_share_one_request(issuer: Issuer) -> None:
    """Ten connections asking at once, then again: one token request, one token."""
    provider = ClientCredentialsTokens(issuer.token_url, "c", Secret(SECRET), "kafka")
    tokens = await asyncio.gather(*(provider.token() for _ in range(10)))
    tokens.append(await provider.token())
    assert len(set(tokens)) == 1
    assert issuer.requests["c"] == 1


async def test_token_is_refreshed_after_80_percent_of_its_life(
    issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before 80% of the 60 s lifetime the token is reused; after it, a new one is fetched."""
    clock = [1000.0]
    monkeypatch.setattr(oauth, "_now", lambda: clock[0])
    provider = ClientCredentialsTokens(issuer.token_url, "c", Secret(SECRET), None)
    await provider.token()
    clock[0] += 47.9
    await provider.token()
    assert issuer.requests["c"] == 1
    clock[0] += 0.2
    await provider.token()
    assert issuer.requests["c"] == 2


async def test_failed_refresh_keeps_the_unexpired_token_then_fails_clearly(
    issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Endpoint gone at refresh: the current token serves until it expires, then one line."""
    clock = [1000.0]
    monkeypatch.setattr(oauth, "_now", lambda: clock[0])
    provider = ClientCredentialsTokens(issuer.token_url, "c", Secret(SECRET), None)
    first = await provider.token()
    issuer.close()
    clock[0] += 50
    with structlog.testing.capture_logs() as logs:
        assert await provider.token() == first
    assert logs[0]["event"] == "token refresh failed; using the current token until it expires"
    clock[0] += 11
    with pytest.raises(TokenError) as failed:
        await provider.token()
    assert str(failed.value).startswith(f"OAuth token endpoint {issuer.token_url} (client 'c'): ")
    assert failed.value.retryable


async def test_refused_client_is_one_line_without_the_secret(issuer: Issuer) -> None:
    """A wrong secret: the endpoint's status and OAuth error, not retryable, secret absent."""
    provider = ClientCredentialsTokens(issuer.token_url, "c", Secret("wrong-" + SECRET), None)
    with pytest.raises(TokenError) as failed:
        await provider.token()
    assert str(failed.value) == (
        f"OAuth token endpoint {issuer.token_url} (client 'c'): "
        "HTTP 401 invalid_client: bad client credentials"
    )
    assert not failed.value.retryable


def _presigned(token: str) -> tuple[str, dict[str, list[str]]]:
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}", parse_qs(parts.query)


@pytest.mark.usefixtures("aws_env")
async def test_msk_token_is_a_presigned_connect_for_the_given_credentials_and_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The token is base64url of a SigV4-presigned kafka-cluster:Connect for the credentials in
    the environment and the region, valid 900 s, re-signed after 80% of that."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-key-for-signing-only")
    clock = [1000.0]
    monkeypatch.setattr(oauth, "_now", lambda: clock[0])
    provider = MskIamTokens("eu-west-3")

    base, query = _presigned(await provider.token())

    assert base == "https://kafka.eu-west-3.amazonaws.com/"
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    key, _date, region, service, _ = query["X-Amz-Credential"][0].split("/")
    assert (key, region, service) == (ACCESS_KEY, "eu-west-3", "kafka-cluster")
    assert query["X-Amz-Expires"] == ["900"]
    assert query["X-Amz-Signature"][0]
    assert "secret-key-for-signing-only" not in str(query)
    clock[0] += 0.79 * 900
    await provider.token()
    assert provider.fetches == 1
    clock[0] += 0.02 * 900
    await provider.token()
    assert provider.fetches == 2


@pytest.mark.usefixtures("aws_env")
async def test_msk_without_credentials_is_one_line() -> None:
    """No AWS credentials anywhere in the chain: one line saying so, not retryable."""
    with pytest.raises(TokenError) as failed:
        await MskIamTokens("eu-west-3").token()
    assert str(failed.value).startswith("AWS MSK IAM (region eu-west-3): no AWS credentials found")
    assert not failed.value.retryable
