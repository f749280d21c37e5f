"""AWS MSK IAM: the OAUTHBEARER token is a SigV4-presigned ``kafka-cluster:Connect`` request.

AWS's signer (aws-msk-iam-sasl-signer-python, the ``msk`` extra) builds it from the standard AWS
credential chain: environment, shared config and credentials files, web identity, container and
instance roles. A token is valid for 15 minutes from signing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from consumer.kafka.oauth import CachedTokenProvider, TokenError


class MskIamTokens(CachedTokenProvider):
    """Presigned MSK IAM tokens for `region`, signed anew after `REFRESH_AFTER` of their life."""

    def __init__(self, region: str) -> None:
        super().__init__()
        self.region = region

    async def _fetch(self) -> tuple[str, float]:
        # Looking credentials up may ask the instance metadata service: keep it off the loop.
        return await asyncio.to_thread(self._sign)

    def _sign(self) -> tuple[str, float]:
        import botocore.session
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
        from botocore.credentials import CredentialProvider
        from botocore.exceptions import BotoCoreError

        where = f"AWS MSK IAM (region {self.region})"
        try:
            credentials = botocore.session.Session().get_credentials()
        except BotoCoreError as exc:
            why = f"{where}: cannot load AWS credentials: {exc}"
            raise TokenError(why, retryable=False) from None
        if credentials is None:
            raise TokenError(
                f"{where}: no AWS credentials found (environment, ~/.aws files, web identity, "
                "container or instance role)",
                retryable=False,
            )

        class Found(CredentialProvider):  # type: ignore[misc]
            """What the chain found, so the signer does not look a second time."""

            def load(self) -> Any:
                return credentials

        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
            self.region, Found()
        )
        return token, expiry_ms / 1000 - time.time()
