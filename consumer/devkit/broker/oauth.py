"""OAUTHBEARER on a secured local broker, the tokens checked by Kafka's own JWT validator.

    broker = LocalBroker(state, secured=True, **oauth_broker(jwks_url, token_url, audience))

adds OAUTHBEARER to the SASL_SSL listener of a secured `LocalBroker` (SCRAM and PLAIN stay).
The broker fetches signing keys from `jwks_url` (an identity provider's JWKS document) and
accepts a JWT only when it is signed by one of them, unexpired, and for `audience`.
"""

from __future__ import annotations

from typing import Any

from consumer.devkit.broker.jars import KAFKA_VERSION

SECURITY = "org.apache.kafka.common.security.oauthbearer"
REAUTH_MS = 60_000
"""``connections.max.reauth.ms``: the broker ends a session when its token expires (or after
this long), so a client has to come back with a fresh token. Unset, Kafka never looks again."""


def oauth_broker(
    jwks_url: str, token_url: str, audience: str, reauth_ms: int = REAUTH_MS
) -> dict[str, Any]:
    """`LocalBroker` keyword arguments for a broker that takes OAUTHBEARER on SASL_SSL."""
    listener = "listener.name.sasl_ssl.oauthbearer"
    lines = [
        "",
        "# OAUTHBEARER (consumer/devkit/broker/oauth.py)",
        "sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN,OAUTHBEARER",
        f"{listener}.sasl.jaas.config={SECURITY}.OAuthBearerLoginModule required;",
        f"{listener}.sasl.server.callback.handler.class={SECURITY}.OAuthBearerValidatorCallbackHandler",
        f"sasl.oauthbearer.jwks.endpoint.url={jwks_url}",
        f"sasl.oauthbearer.expected.audience={audience}",
        f"connections.max.reauth.ms={reauth_ms}",
    ]
    if _version() >= (4, 1):
        # Named explicitly: 4.1.1 left at its default accepted tokens for another audience.
        lines.append(f"sasl.oauthbearer.jwt.validator.class={SECURITY}.BrokerJwtValidator")
    # Kafka 4 calls no URL that this JVM property does not list (3.x ignores it).
    allowed = f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={jwks_url},{token_url}"
    return {"extra_properties": "\n".join(lines) + "\n", "jvm_flags": [allowed]}


def _version() -> tuple[int, ...]:
    return tuple(int(part) for part in KAFKA_VERSION.split(".")[:2])
