"""OAuth sources end to end over HTTP: connect session → browser → sandbox authorization
server → callback → Fivetran simulator (whose setup tests introspect the handed-over token)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.config import Settings
from tests.fixtures.connect import configure_with_first_choices
from tests.fixtures.onboarding import (
    RETURN_TO,
    Simulator,
    browse_connect,
    oauth_connect,
    problem,
    vault_rows,
)


@pytest.fixture(params=["per_end_user", "shared", "per_service"])
async def strategy_api(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings]
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    from app.callers.service import create_api_key
    from app.main import create_app

    settings = settings_factory(onboarding={"group_strategy": request.param})
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        async with application.state.sessionmaker() as s, s.begin():
            _, key = await create_api_key(s, name="t", scopes=["admin"])
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application),
            base_url="http://127.0.0.1:8000",
            headers={"Authorization": f"Bearer {key}"},
        ) as c:
            yield application, c


@pytest.mark.parametrize(
    ("service", "extra", "token_field"),
    [
        ("salesforce", {}, "refresh_token"),
        ("hubspot", {}, "refresh_token"),
        ("intercom", {}, "access_token"),
        ("facebook_ads", {}, "access_token"),
    ],
)
async def test_oauth_sources_connect(
    strategy_api: tuple[FastAPI, httpx.AsyncClient],
    service: str,
    extra: dict[str, object],
    token_field: str,
) -> None:
    app, api = strategy_api
    sim = Simulator(api)
    assert (await api.put("/v1/end-users/org-7", json={"name": "Org 7"})).status_code == 201
    result = await oauth_connect(api, "org-7", service, **extra)
    if service == "facebook_ads":  # an account picker: the choice comes before the create
        assert result["status"] == "needs_configuration", result
        await configure_with_first_choices(api, {}, result["connection_id"])
    else:
        assert result["status"] == "connected", result
    r = await api.get(f"/v1/connections/{result['connection_id']}")
    assert r.status_code == 200, r.text
    conn = r.json()
    assert conn["state"] == "connected" and conn["auth_method"] == "oauth2"
    assert conn["setup_tests"] and all(t["status"] != "FAILED" for t in conn["setup_tests"])
    # The grant was handed to Fivetran: we must never refresh it ourselves.
    from app.connections.models import Connection
    from app.connections.service import GrantHandedOff, ensure_refresh_allowed

    async with app.state.sessionmaker() as s:
        row = await s.get(Connection, conn["id"])
        assert row is not None and row.grant_handed_off_at is not None
        with pytest.raises(GrantHandedOff):
            ensure_refresh_allowed(row)
    # Fivetran holds exactly this connection, un-paused.
    remote = (await sim.get(f"/v1/connections/{conn['fivetran_connection_id']}")).json()["data"]
    assert remote["service"] == service and remote["paused"] is False
    # The token kind the provider issues was stored (retention "keep").
    async with app.state.sessionmaker() as s:
        from app.vault.models import VaultSecret

        fields = set(
            (
                await s.scalars(select(VaultSecret.field).where(VaultSecret.owner_id == conn["id"]))
            ).all()
        )
    assert token_field in fields


async def test_reauthorization_of_a_broken_connection(
    app: FastAPI, api: httpx.AsyncClient, sim: Simulator
) -> None:
    assert (await api.put("/v1/end-users/org-9", json={})).status_code == 201
    result = await oauth_connect(api, "org-9", "salesforce")
    assert result["status"] == "connected", result
    cid = result["connection_id"]
    fivetran_id = (await api.get(f"/v1/connections/{cid}")).json()["fivetran_connection_id"]
    await sim.break_connection(fivetran_id)
    r = await api.get(f"/v1/connections/{cid}", params={"refresh": "true"})
    assert r.status_code == 200 and r.json()["state"] == "broken", r.text
    # A new consent, patched onto the same Fivetran connection.
    r = await api.post(
        f"/v1/connections/{cid}/reauthorize",
        json={"return_to": "http://127.0.0.1:3000/onboarding/done"},
    )
    assert r.status_code == 201, r.text
    final = await browse_connect(api, r.json()["connect_url"])
    assert final["status"] == "connected", final
    assert final["connection_id"] == cid
    r = await api.get(f"/v1/connections/{cid}")
    conn = r.json()
    assert conn["state"] == "connected" and conn["fivetran_connection_id"] == fivetran_id
    remote = await sim.connections_in(conn["group_id"])
    assert [c["id"] for c in remote if c["service"] == "salesforce"] == [fivetran_id]
    # The history shows connected → broken → connected.
    from app.connections.models import ConnectionTransition

    async with app.state.sessionmaker() as s:
        states = list(
            (
                await s.scalars(
                    select(ConnectionTransition.to_state)
                    .where(ConnectionTransition.connection_id == cid)
                    .order_by(ConnectionTransition.id)
                )
            ).all()
        )
    assert states[-3:] == ["connected", "broken", "connected"], states


async def test_offboarding_revokes_and_shreds_oauth_secrets(
    app: FastAPI, api: httpx.AsyncClient, sim: Simulator
) -> None:
    assert (await api.put("/v1/end-users/gone-1", json={})).status_code == 201
    result = await oauth_connect(api, "gone-1", "salesforce")
    assert result["status"] == "connected"
    from app.end_users.models import EndUser

    async with app.state.sessionmaker() as s:
        eu_id = await s.scalar(select(EndUser.id).where(EndUser.external_id == "gone-1"))
    assert await vault_rows(app, eu_id) >= 1
    from app.sandbox.oauth import introspect_token

    async with app.state.sessionmaker() as s:
        token = await app.state.vault.get(
            s,
            end_user_id=eu_id,
            owner_type="connection",
            owner_id=result["connection_id"],
            field="refresh_token",
        )
    assert token is not None
    base = "http://127.0.0.1:8000"
    assert await introspect_token(app.state.http, base, "salesforce", token) is True
    r = await api.delete("/v1/end-users/gone-1")
    assert r.status_code == 204, r.text
    assert await vault_rows(app, eu_id) == 0
    # Salesforce supports revocation (RFC 7009): the grant is dead at the provider too.
    assert await introspect_token(app.state.http, base, "salesforce", token) is False
    problem(await api.get(f"/v1/connections/{result['connection_id']}"), 404)


async def test_consent_finished_after_offboarding_leaves_no_tokens(
    app: FastAPI, api: httpx.AsyncClient, sim: Simulator
) -> None:
    assert (await api.put("/v1/end-users/late-1", json={})).status_code == 201
    from app.end_users.models import EndUser

    async with app.state.sessionmaker() as s:
        eu_id = await s.scalar(select(EndUser.id).where(EndUser.external_id == "late-1"))
    r = await api.post(
        "/v1/connect-sessions",
        json={"end_user": "late-1", "service": "hubspot", "return_to": RETURN_TO},
    )
    assert r.status_code == 201, r.text
    connect_url = r.json()["connect_url"]
    # The end-user is offboarded while (say) their browser is at the consent screen.
    r = await api.delete("/v1/end-users/late-1")
    assert r.status_code == 204, r.text
    try:
        final = await browse_connect(api, connect_url)
    except AssertionError:
        final = {"status": "error"}  # the flow refused to start at all: also fine
    assert final["status"] == "error", final
    assert await vault_rows(app, eu_id) == 0
    posts = [
        e
        for e in await sim.requests()
        if e.get("method") == "POST"
        and str(e.get("path", "")).rstrip("/").endswith("/v1/connections")
    ]
    assert posts == []


async def test_handed_off_grant_is_never_refreshed_by_us(
    app: FastAPI, api: httpx.AsyncClient
) -> None:
    """Single refresher: once Fivetran holds the refresh token, a refresh attempt raises
    before any token request leaves the service."""
    from app.connect.refresh import refresh_owned_grant
    from app.connections.models import Connection
    from app.connections.service import GrantHandedOff

    assert (await api.put("/v1/end-users/org-r", json={})).status_code == 201
    result = await oauth_connect(api, "org-r", "hubspot")
    assert result["status"] == "connected"
    sent: list[str] = []
    inner = app.state.outbound_transport

    class Spy(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            sent.append(request.url.path)
            return await inner.handle_async_request(request)

    app.state.outbound_transport = Spy()
    try:
        async with app.state.sessionmaker() as s:
            conn = await s.get(Connection, result["connection_id"])
            with pytest.raises(GrantHandedOff):
                await refresh_owned_grant(s, app.state, conn)
    finally:
        app.state.outbound_transport = inner
    assert not [p for p in sent if p.endswith("/token")]


async def test_payload_preview_of_an_oauth_source(api: httpx.AsyncClient) -> None:
    assert (await api.put("/v1/end-users/prev-1", json={})).status_code == 201
    r = await api.post(
        "/v1/payloads/preview",
        json={"end_user": "prev-1", "service": "salesforce", "config": {}},
    )
    assert r.status_code == 200, r.text
    body = r.json()["body"]
    assert body["service"] == "salesforce" and body["config"]["schema"] == "salesforce"
    assert body["auth"]["refresh_token"] == "******"
    assert body["auth"]["client_access"]["client_secret"] == "******"
    assert "preview-refresh-token" not in r.text
    assert body["paused"] is True and body["run_setup_tests"] is True


async def test_denied_consent_fails_the_reserved_connection(
    app: FastAPI, api: httpx.AsyncClient, sim: Simulator
) -> None:
    assert (await api.put("/v1/end-users/no-1", json={})).status_code == 201
    r = await api.post(
        "/v1/connect-sessions",
        json={"end_user": "no-1", "service": "hubspot", "return_to": RETURN_TO},
    )
    assert r.status_code == 201, r.text
    final = await browse_connect(api, r.json()["connect_url"], login_hint="deny")
    assert final["status"] == "error", final
    conns = (await api.get("/v1/connections", params={"end_user": "no-1"})).json()["items"]
    assert len(conns) == 1
    assert conns[0]["state"] == "setup_failed", conns[0]
    assert conns[0]["state_reason"].startswith("oauth_failed:")
    assert conns[0]["fivetran_connection_id"] is None
    from app.end_users.models import EndUser

    async with app.state.sessionmaker() as s:
        eu_id = await s.scalar(select(EndUser.id).where(EndUser.external_id == "no-1"))
    assert await vault_rows(app, eu_id) == 0
    # A new consent for the same connection then succeeds (retry after a denial).
    r = await api.post(
        "/v1/connect-sessions",
        json={
            "end_user": "no-1",
            "service": "hubspot",
            "return_to": RETURN_TO,
            "connection_id": conns[0]["id"],
        },
    )
    assert r.status_code == 201, r.text
    final = await browse_connect(api, r.json()["connect_url"])
    assert final["status"] == "connected", final
    assert final["connection_id"] == conns[0]["id"]


async def test_fivetran_down_at_callback_keeps_tokens_and_resumes(
    app: FastAPI, api: httpx.AsyncClient, sim: Simulator
) -> None:
    from app.connections.service import resume_creating

    assert (await api.put("/v1/end-users/down-1", json={})).status_code == 201
    await sim.fault(method="POST", path_regex=r"^/v1/connections/?$", status=503, count=50)
    result = await oauth_connect(api, "down-1", "salesforce")
    assert result["status"] == "error", result
    conns = (await api.get("/v1/connections", params={"end_user": "down-1"})).json()["items"]
    assert [c["state"] for c in conns] == ["creating"]
    cid = conns[0]["id"]
    # The grant is safe in the vault while Fivetran is down.
    async with app.state.sessionmaker() as s:
        from app.vault.models import VaultSecret

        fields = set(
            (await s.scalars(select(VaultSecret.field).where(VaultSecret.owner_id == cid))).all()
        )
    assert "refresh_token" in fields
    await sim.clear_faults()
    async with app.state.sessionmaker() as s:
        assert await resume_creating(s, app.state) == 1
        await s.commit()
    conn = (await api.get(f"/v1/connections/{cid}")).json()
    assert conn["state"] == "connected", conn
    remote = await sim.connections_in(conn["group_id"])
    assert [c["id"] for c in remote if c["service"] == "salesforce"] == [
        conn["fivetran_connection_id"]
    ]


async def test_fivetran_down_while_creating_the_group_keeps_the_connection_resumable(
    settings_factory: Callable[..., Settings],
) -> None:
    """per_service: the group is created at the first connection of a service. If Fivetran
    is down right then, the consented connection must stay resumable (``creating``, tokens
    kept) and be finished by ``resume_creating`` — not left ``authorizing`` for good."""
    from app.callers.service import create_api_key
    from app.connections.service import resume_creating
    from app.main import create_app

    application = create_app(settings_factory(onboarding={"group_strategy": "per_service"}))
    async with application.router.lifespan_context(application):
        async with application.state.sessionmaker() as s, s.begin():
            _, key = await create_api_key(s, name="t", scopes=["admin"])
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application),
            base_url="http://127.0.0.1:8000",
            headers={"Authorization": f"Bearer {key}"},
        ) as api:
            sim = Simulator(api)
            assert (await api.put("/v1/end-users/grp-down", json={})).status_code == 201
            await sim.fault(method="POST", path_regex=r"^/v1/groups/?$", status=503, count=50)
            await sim.fault(method="GET", path_regex=r"^/v1/groups/?$", status=503, count=50)
            result = await oauth_connect(api, "grp-down", "salesforce")
            assert result["status"] == "error", result
            conns = (await api.get("/v1/connections", params={"end_user": "grp-down"})).json()
            assert [c["state"] for c in conns["items"]] == ["creating"], conns
            cid = conns["items"][0]["id"]
            await sim.clear_faults()
            async with application.state.sessionmaker() as s:
                assert await resume_creating(s, application.state) == 1
                await s.commit()
            conn = (await api.get(f"/v1/connections/{cid}")).json()
            assert conn["state"] == "connected", conn
            remote = await sim.connections_in(conn["group_id"])
            assert [c["id"] for c in remote] == [conn["fivetran_connection_id"]]
