"""R19/R20: the single-refresher rule and serialized refreshes of grants we still own, with
the sandbox authorization server rotating refresh tokens (QuickBooks rotates)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from app.connect.models import OAuthGrant
from app.connect.refresh import refresh_owned_grant
from app.connections.models import Connection
from app.providers.errors import OAuthProviderError
from app.vault.secret import Secret
from tests.fixtures.browser import query_of, relative
from tests.fixtures.connect import FlowHarness

ROTATING = "quickbooks"


async def _owned_grant(harness: FlowHarness) -> str:
    """A grant whose Fivetran hand-off never happened (Fivetran refuses the create)."""
    assert harness.app.state.providers.get(ROTATING).spec.refresh_token_rotation == "yes"
    await harness.end_user()
    r = await harness.client.post(
        "/sandbox/fivetran/_control/faults",
        json={"method": "POST", "path_regex": r"^/v1/connections$", "status": 503, "count": 50},
    )
    assert r.status_code == 201, r.text
    browser, callback, _ = await harness.callback_url_for(ROTATING)
    r = await browser.get(relative(callback))
    back = query_of(r.headers["location"])
    assert back["status"] == "error", back
    async with harness.app.state.sessionmaker() as s:
        grant = await s.scalar(select(OAuthGrant))
        assert grant is not None
        connection = await s.get(Connection, grant.connection_id)
        assert connection is not None and connection.grant_handed_off_at is None
        return grant.connection_id


async def _refresh(harness: FlowHarness, connection_id: str, **kwargs: Any) -> Any:
    async with harness.app.state.sessionmaker() as s:
        connection = await s.get(Connection, connection_id)
        return await refresh_owned_grant(s, harness.app.state, connection, **kwargs)


def _refresh_hits(harness: FlowHarness) -> int:
    return sum(
        1
        for (_m, path), body in zip(harness.spy.requests, harness.spy.bodies, strict=True)
        if path.endswith("/token") and b"grant_type=refresh_token" in body
    )


async def test_r19_handed_off_grant_is_never_refreshed(harness: FlowHarness) -> None:
    await harness.end_user()
    browser, callback, _ = await harness.callback_url_for(ROTATING)
    r = await browser.get(relative(callback))
    connection_id = query_of(r.headers["location"])["connection_id"]
    async with harness.app.state.sessionmaker() as s:
        connection = await s.get(Connection, connection_id)
        assert connection is not None and connection.grant_handed_off_at is not None
    from app.connections.service import GrantHandedOff

    with pytest.raises(GrantHandedOff):
        await _refresh(harness, connection_id)
    assert _refresh_hits(harness) == 0


async def test_r19_reusing_a_rotated_refresh_token_kills_the_grant(harness: FlowHarness) -> None:
    connection_id = await _owned_grant(harness)
    _, old_refresh = await harness.stored_tokens(connection_id)
    outcome = await _refresh(harness, connection_id)
    assert outcome.refreshed
    _, new_refresh = await harness.stored_tokens(connection_id)
    assert new_refresh and new_refresh != old_refresh
    # Someone else (a second refresher) reuses the old refresh token: the AS answers
    # invalid_grant and revokes the whole grant, the new refresh token included.
    from app.providers.client import refresh

    provider = harness.app.state.providers.get(ROTATING)
    credentials = await harness.app.state.providers.credentials(None, ROTATING)
    endpoints = provider.endpoints({})
    for token in (old_refresh, new_refresh):
        with pytest.raises(OAuthProviderError) as info:
            await refresh(
                provider,
                refresh_token=Secret(token),
                token_endpoint=endpoints.token_url,
                credentials=credentials,
                issuer=endpoints.issuer,
                transport=harness.app.state.outbound_transport,
            )
        assert info.value.error_code == "invalid_grant"
    # Our own next refresh finds the grant dead: needs re-authorization, not retried.
    from app.errors import Conflict

    with pytest.raises(Conflict) as needs:
        await _refresh(harness, connection_id, reuse_within_seconds=0)
    assert needs.value.code == "needs_reauth"
    async with harness.app.state.sessionmaker() as s:
        grant = await s.get(OAuthGrant, connection_id)
        assert grant is not None and grant.needs_reauth


async def test_r20_concurrent_refreshes_make_one_token_request(harness: FlowHarness) -> None:
    connection_id = await _owned_grant(harness)
    _, old_refresh = await harness.stored_tokens(connection_id)
    outcomes = await asyncio.gather(*(_refresh(harness, connection_id) for _ in range(10)))
    assert _refresh_hits(harness) == 1
    assert sum(1 for o in outcomes if o.refreshed) == 1
    tokens = {o.access_token.reveal() for o in outcomes}
    assert len(tokens) == 1
    access, new_refresh = await harness.stored_tokens(connection_id)
    assert tokens == {access}
    assert new_refresh != old_refresh
    async with harness.app.state.sessionmaker() as s:
        grant = await s.get(OAuthGrant, connection_id)
        assert grant is not None and grant.generation == 1 and not grant.needs_reauth
    # A caller arriving right after reuses the fresh access token: still one request.
    late = await _refresh(harness, connection_id)
    assert not late.refreshed and late.access_token.reveal() == access
    assert _refresh_hits(harness) == 1
    # The stored (rotated) refresh token is the live one: the next refresh succeeds.
    assert (await _refresh(harness, connection_id, reuse_within_seconds=0)).refreshed


async def test_r20_lost_response_after_rotation_ends_in_needs_reauth(
    harness: FlowHarness,
) -> None:
    connection_id = await _owned_grant(harness)
    _, old_refresh = await harness.stored_tokens(connection_id)
    harness.spy.drop_response_for = 1  # the AS rotates, the answer never arrives
    from app.errors import Conflict

    with pytest.raises(Conflict) as info:
        await _refresh(harness, connection_id)
    assert info.value.code == "needs_reauth"
    assert _refresh_hits(harness) == 2  # one retry with the same refresh token, no more
    async with harness.app.state.sessionmaker() as s:
        grant = await s.get(OAuthGrant, connection_id)
        assert grant is not None and grant.needs_reauth and grant.generation == 0
    _, still = await harness.stored_tokens(connection_id)
    assert still == old_refresh
    with pytest.raises(Conflict):
        await _refresh(harness, connection_id)
    assert _refresh_hits(harness) == 2
