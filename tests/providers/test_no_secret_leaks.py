"""No token, code, verifier or client secret in any log record (R16), even at DEBUG."""

from __future__ import annotations

import logging

import pytest

from app.providers import OAuthProviderError, refresh
from tests.fixtures.providers import Harness


@pytest.mark.parametrize("key", ["zoom", "hubspot", "tiktok_ads"])
async def test_flow_logs_no_secrets(
    harness: Harness, caplog: pytest.LogCaptureFixture, key: str
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("authlib", "httpx", "httpcore", "pbf"):
        caplog.set_level(logging.DEBUG, logger=name)
    auth, result = await harness.connect(key)
    secrets_seen = [
        auth.code,
        auth.verifier,
        auth.state,
        auth.credentials.client_secret.reveal(),
        result.access_token.reveal(),  # type: ignore[union-attr]
    ]
    if result.refresh_token is not None:
        secrets_seen.append(result.refresh_token.reveal())
        await refresh(
            auth.provider,
            refresh_token=result.refresh_token,
            token_endpoint=auth.endpoints.token_url,
            credentials=auth.credentials,
            issuer=auth.endpoints.issuer,
            transport=harness.recorder,
        )
    with pytest.raises(OAuthProviderError) as info:
        await harness.exchange(auth)  # replay
    text = (
        "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
        + str(info.value)
        + repr(result)
    )
    assert any(r.name.startswith("authlib") for r in caplog.records)
    for value in secrets_seen:
        assert value and value not in text
