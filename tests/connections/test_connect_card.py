"""Fivetran's Connect Card, for the services nothing else reaches (issue #12 part 4).

Over HTTP against the app and its Fivetran simulator: every one of Fivetran's services is
offered by at least one route; a card service is created (paused, no auth, ``authorizing``),
handed Fivetran's card, set up in the (simulated) card and comes back ``connected``; a failed
setup comes back ``setup_failed``; forged, replayed, foreign, expired and missing return
tokens change nothing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.connect.models import ConnectCardLink
from app.db import utcnow
from app.fivetran.index import all_services
from tests.fixtures.definition import definition_or_skip
from tests.fixtures.fivetran import SHARED
from tests.fixtures.onboarding import RETURN_TO, Simulator, problem

CountRows = Callable[..., Awaitable[int]]


# --- offering ----------------------------------------------------------------------------


async def test_every_fivetran_service_is_offered(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/sources")
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    by_route = Counter(item["auth_method"] for item in items)
    offered = {item["service"] for item in items}
    index = SHARED / "service-index.json"
    if index.exists():  # Fivetran's own service index, not our copy
        expected = set(json.loads(index.read_text())["connectors"])
    else:
        expected = set(all_services())
    assert len(expected) == 773
    assert offered == expected, sorted(expected - offered)
    card_only = {i["service"] for i in items if i["auth_method"] == "connect_card"}
    print(
        f"\nsources offered: oauth2={by_route['oauth2']} oauth1={by_route['oauth1']}"
        f" credentials={by_route['credentials']}"
        f" connect_card={by_route['connect_card']} distinct={len(offered)}/{len(expected)}"
    )
    # Each card item says why, and only services no other route reaches are card items.
    ways: dict[str, list[str]] = {}
    for item in items:
        ways.setdefault(item["service"], []).append(item["auth_method"])
        if item["auth_method"] == "connect_card":
            assert item["reason"], item["service"]
        else:
            assert "reason" not in item or item["reason"] is None
    assert all(ways[s] == ["connect_card"] for s in card_only)
    for service in ("xero", "slack", "mailchimp", "google_drive", "box", "notion"):
        assert ways[service] == ["connect_card"], (service, ways[service])
    assert ways["salesforce"][0] == "oauth2" and ways["postgres"] == ["credentials"]


async def test_card_items_show_their_reason_and_fields(api: httpx.AsyncClient) -> None:
    reasons = {}
    for service in ("slack", "xero", "box", "notion"):
        r = await api.get(f"/v1/sources/{service}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["auth_method"] == "connect_card"
        assert body.get("scopes") is None
        reasons[service] = body["reason"]
        props = body["config_schema"]["properties"]
        for ours in ("schema", "table", "table_group_name", "auth"):
            assert ours not in props
        assert not any(p.get("writeOnly") for p in props.values()), service  # no secrets
    assert "only through its Connect Card" in reasons["slack"]
    assert "only through its Connect Card" in reasons["xero"]
    assert "files or tables" in reasons["box"]
    assert "no token" in reasons["notion"]
    xero = (await api.get("/v1/sources/xero")).json()["config_schema"]
    assert "use_webhooks" in xero["properties"] and "client_secret" not in xero["properties"]
    assert xero.get("required") is None  # the card asks for everything else
    r = await api.get("/v1/sources", params={"auth_method": "connect_card", "limit": 3})
    assert [i["auth_method"] for i in r.json()["items"]] == ["connect_card"] * 3
    problem(await api.get("/v1/sources", params={"auth_method": "card"}), 422)


async def test_every_service_by_card_when_configured(
    make_app_client: Callable[..., Any],
) -> None:
    _, api = await make_app_client(onboarding={"connect_card": "all"})
    items: list[dict[str, Any]] = []
    cursor = None
    while True:  # the catalog is longer than one default page now
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/v1/sources", params=params)).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    cards = {i["service"]: i for i in items if i["auth_method"] == "connect_card"}
    assert len(cards) == 773
    assert "onboarding.connect_card" in cards["salesforce"]["reason"]
    assert "only through its Connect Card" in cards["slack"]["reason"]
    # The preferred way stays first, the card last; pages keep that order.
    sf = [i["auth_method"] for i in items if i["service"] == "salesforce"]
    assert sf[0] == "oauth2" and sf[-1] == "connect_card"
    small = []
    cursor = None
    while True:
        params = {"limit": 97}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/v1/sources", params=params)).json()
        small += [(i["service"], i["auth_method"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert small == [(i["service"], i["auth_method"]) for i in items]


# --- the flow ----------------------------------------------------------------------------


async def _end_user(api: httpx.AsyncClient, name: str = "acme") -> None:
    r = await api.put(f"/v1/end-users/{name}", json={"name": name})
    assert r.status_code in (200, 201), r.text


async def _create(api: httpx.AsyncClient, service: str = "slack", **body: Any) -> dict[str, Any]:
    r = await api.post(
        "/v1/connections", json={"end_user": "acme", "service": service, "config": {}, **body}
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def _card(api: httpx.AsyncClient, connection_id: str, **body: Any) -> dict[str, Any]:
    r = await api.post(
        f"/v1/connections/{connection_id}/connect-card", json={"return_to": RETURN_TO, **body}
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def _fill_card(
    client: httpx.AsyncClient, card_url: str, *, account: str = "me@acme.example", **fields: str
) -> httpx.Response:
    """The end-user in the (simulated) card: open it, Save & Test."""
    parts = urlsplit(card_url)
    r = await client.get(f"{parts.path}?{parts.query}")
    assert r.status_code == 200, r.text
    assert "Simulated Fivetran Connect Card" in r.text
    token = parse_qs(parts.query)["auth"][0]
    action = re.search(r"<form method=post action=([^ >]+)>", r.text)
    assert action is not None
    return await client.post(
        urljoin(parts.path, action.group(1)),
        data={"auth": token, "_account": account, **fields},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def test_card_service_created_authorized_and_connected(
    app: FastAPI, api: httpx.AsyncClient, sim: Simulator, count_rows: CountRows
) -> None:
    await _end_user(api)
    conn = await _create(api, "slack", config={})
    assert conn["auth_method"] == "connect_card"
    assert conn["state"] == "authorizing" and conn["state_reason"] == "awaiting_connect_card"
    assert conn["fivetran_connection_id"] and conn["paused"] is True
    # Created at Fivetran without auth and without setup tests, in the definition's shape.
    creates = [
        q for q in await sim.requests() if q["method"] == "POST" and q["path"] == "/v1/connections"
    ]
    body = creates[-1]["body"]
    assert "auth" not in body and body["run_setup_tests"] is False and body["paused"] is True
    errors = [e.message for e in definition_or_skip()("slack").iter_errors(body)]
    assert errors == []

    card = await _card(api, conn["id"], hide_setup_guide=True)
    assert set(card) == {"connection_id", "connect_card_url", "expires_at"}
    assert card["connection_id"] == conn["id"]
    url = card["connect_card_url"]
    query = parse_qs(urlsplit(url).query)
    assert query["redirect_uri"][0].startswith("http://127.0.0.1:8000/connect-card/return/")
    assert query["hide_setup_guide"] == ["true"]
    token = query["redirect_uri"][0].rsplit("/", 1)[1]
    assert await count_rows("connect_card_links", "token_hash = :t", t=token) == 0  # hashed

    r = await _fill_card(api, url)
    assert r.status_code == 303, r.text
    back = r.headers["location"]
    assert f"id={conn['fivetran_connection_id']}" in back
    r = await api.get(_path(back))
    assert r.status_code == 303, r.text
    assert r.headers["referrer-policy"] == "no-referrer"
    landed = urlsplit(r.headers["location"])
    assert f"{landed.scheme}://{landed.netloc}{landed.path}" == RETURN_TO
    assert parse_qs(landed.query) == {"status": ["connected"], "connection_id": [conn["id"]]}

    got = (await api.get(f"/v1/connections/{conn['id']}")).json()
    assert got["state"] == "connected" and got["paused"] is False
    assert got["setup_state"] == "connected"
    remote = (await sim.get(f"/v1/connections/{conn['fivetran_connection_id']}")).json()
    assert remote["data"]["paused"] is False  # un-paused like an OAuth connection
    schemas = await sim.get(f"/v1/connections/{conn['fivetran_connection_id']}/schemas")
    assert schemas.status_code == 200  # the schema policy was applied
    for kind in ("connection.created", "connection.connected"):
        assert await count_rows("events", "kind = :k AND connection_id = :c", k=kind, c=conn["id"])
    assert await count_rows("connect_card_links", "status = 'completed'") == 1
    # Replaying the return: a page, nothing changes.
    r = await api.get(_path(back))
    assert r.status_code == 400 and "text/html" in r.headers["content-type"]
    assert (await api.get(f"/v1/connections/{conn['id']}")).json()["state"] == "connected"


async def test_setup_failure_then_card_again(
    api: httpx.AsyncClient, sim: Simulator, count_rows: CountRows
) -> None:
    await _end_user(api)
    conn = await _create(api, "mailchimp")
    card = await _card(api, conn["id"])
    r = await _fill_card(api, card["connect_card_url"], account="invalid")
    assert r.status_code == 400 and "Setup test failed" in r.text  # the card shows it
    leave = re.search(r'href="(leave\?[^"]*)"', r.text)
    assert leave is not None  # relative to the card page
    r = await api.get(urljoin(_path(card["connect_card_url"]), leave.group(1)))
    assert r.status_code == 303
    r = await api.get(_path(r.headers["location"]))
    assert r.status_code == 303
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q["status"] == ["error"] and q["error"] == ["setup_failed"]
    got = (await api.get(f"/v1/connections/{conn['id']}")).json()
    assert got["state"] == "setup_failed", got
    assert got["state_reason"] == "connect_card_setup_incomplete"
    assert await count_rows("events", "kind = 'connection.setup_failed'") == 1

    # The same connection, a new card: this time it works.
    card = await _card(api, conn["id"])
    r = await _fill_card(api, card["connect_card_url"])
    r = await api.get(_path(r.headers["location"]))
    assert parse_qs(urlsplit(r.headers["location"]).query)["status"] == ["connected"]
    assert (await api.get(f"/v1/connections/{conn['id']}")).json()["state"] == "connected"


async def test_card_reauthorizes_a_broken_connection(
    api: httpx.AsyncClient, sim: Simulator
) -> None:
    await _end_user(api)
    conn = await _create(api, "box")
    card = await _card(api, conn["id"])
    r = await _fill_card(api, card["connect_card_url"])
    await api.get(_path(r.headers["location"]))
    await sim.break_connection(conn["fivetran_connection_id"])
    r = await api.get(f"/v1/connections/{conn['id']}", params={"refresh": "true"})
    assert r.json()["state"] == "broken", r.text
    card = await _card(api, conn["id"])
    r = await _fill_card(api, card["connect_card_url"], account="other@acme.example")
    r = await api.get(_path(r.headers["location"]))
    assert parse_qs(urlsplit(r.headers["location"]).query)["status"] == ["connected"]
    got = (await api.get(f"/v1/connections/{conn['id']}")).json()
    assert got["state"] == "connected" and got["state_reason"] == "connect_card_completed"


async def test_idempotent_create_and_card_for_other_routes(
    api: httpx.AsyncClient, sim: Simulator, count_rows: CountRows
) -> None:
    await _end_user(api)
    headers = {"Idempotency-Key": "card-1"}
    body = {"end_user": "acme", "service": "notion", "config": {}}
    first = await api.post("/v1/connections", json=body, headers=headers)
    again = await api.post("/v1/connections", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert await count_rows("connections", "service = 'notion'") == 1
    # A card for a credentials connection: refused, nothing asked of Fivetran.
    r = await api.post(
        "/v1/connections",
        json={"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk_1"}},
    )
    stripe = r.json()
    before = len(await sim.requests())
    problem(
        await api.post(
            f"/v1/connections/{stripe['id']}/connect-card", json={"return_to": RETURN_TO}
        ),
        422,
        "not_a_card_connection",
    )
    assert len(await sim.requests()) == before
    # OAuth-only service without asking for the card: told to use a connect session.
    ways: dict[str, list[str]] = {}
    for item in (await api.get("/v1/sources")).json()["items"]:
        ways.setdefault(item["service"], []).append(item["auth_method"])
    oauth_only = next(s for s, w in sorted(ways.items()) if w == ["oauth2"])
    problem(
        await api.post("/v1/connections", json={"end_user": "acme", "service": oauth_only}),
        422,
        "oauth_source",
    )
    # Not offered by card here (onboarding.connect_card = fallback): 404, nothing written.
    problem(
        await api.post(
            "/v1/connections",
            json={"end_user": "acme", "service": oauth_only, "auth_method": "connect_card"},
        ),
        404,
        "source_not_found",
    )
    assert await count_rows("connections", "service = :s", s=oauth_only) == 0


async def test_bad_inputs_are_problems(
    api: httpx.AsyncClient, sim: Simulator, count_rows: CountRows
) -> None:
    await _end_user(api)
    # Secrets are entered in the card, never sent to us.
    r = await api.post(
        "/v1/connections",
        json={"end_user": "acme", "service": "xero", "config": {"client_secret": "s3cr3t"}},
    )
    body = problem(r, 422)
    assert any(e["field"] == "config.client_secret" for e in body["errors"]), body
    assert "s3cr3t" not in r.text
    problem(
        await api.post(
            "/v1/connections",
            json={"end_user": "acme", "service": "xero", "config": {"use_webhooks": "yes"}},
        ),
        422,
    )
    assert await count_rows("connections") == 0
    conn = await _create(api, "xero", config={"use_webhooks": False})
    cid = conn["id"]
    for bad in ("https://evil.example/x", "javascript:alert(1)", "ftp://127.0.0.1:3000/x"):
        r = await api.post(f"/v1/connections/{cid}/connect-card", json={"return_to": bad})
        problem(r, 422, "invalid_return_to")
    problem(await api.post(f"/v1/connections/{cid}/connect-card", json={}), 422)
    problem(
        await api.post(
            f"/v1/connections/{cid}/connect-card",
            json={"return_to": RETURN_TO, "extra": 1},
        ),
        422,
    )
    problem(
        await api.post("/v1/connections/con_nope/connect-card", json={"return_to": RETURN_TO}),
        404,
        "connection_not_found",
    )
    assert await count_rows("connect_card_links") == 0
    # Fivetran down: a problem, no link stored.
    await sim.fault(method="POST", path_regex=r".*/connect-card$", status=503, count=10)
    r = await api.post(f"/v1/connections/{cid}/connect-card", json={"return_to": RETURN_TO})
    assert r.status_code in (502, 503), r.text
    assert await count_rows("connect_card_links") == 0


async def test_card_needs_the_write_scope(
    api: httpx.AsyncClient, make_api_key: Callable[..., Awaitable[str]]
) -> None:
    await _end_user(api)
    conn = await _create(api, "slack")
    key = await make_api_key(scopes=["read"])
    r = await api.post(
        f"/v1/connections/{conn['id']}/connect-card",
        json={"return_to": RETURN_TO},
        headers={"Authorization": f"Bearer {key}"},
    )
    problem(r, 403)


# --- attacks on the return ---------------------------------------------------------------


async def _snapshot(api: httpx.AsyncClient, count_rows: CountRows, *ids: str) -> Any:
    states = [(await api.get(f"/v1/connections/{i}")).json()["state"] for i in ids]
    return (
        states,
        await count_rows("connect_card_links", "status = 'pending'"),
        await count_rows("connection_transitions"),
        await count_rows("events"),
    )


@pytest.mark.parametrize("attack", ["forged", "replayed", "foreign", "expired", "missing"])
async def test_attacks_on_the_return_change_nothing(
    attack: str,
    app: FastAPI,
    api: httpx.AsyncClient,
    sim: Simulator,
    count_rows: CountRows,
) -> None:
    await _end_user(api)
    a = await _create(api, "slack")
    b = await _create(api, "mailchimp")
    card_a = await _card(api, a["id"])
    card_b = await _card(api, b["id"])
    redirect_a = parse_qs(urlsplit(card_a["connect_card_url"]).query)["redirect_uri"][0]
    redirect_b = parse_qs(urlsplit(card_b["connect_card_url"]).query)["redirect_uri"][0]
    token_a = redirect_a.rsplit("/", 1)[1]
    # B really sets up in the card (so a completed setup at Fivetran exists to steal).
    r = await _fill_card(api, card_b["connect_card_url"])
    assert r.status_code == 303
    if attack == "replayed":
        r = await api.get(_path(r.headers["location"]))  # the real return of B
        assert r.status_code == 303
    before = await _snapshot(api, count_rows, a["id"], b["id"])
    if attack == "forged":
        url = f"/connect-card/return/{'A' * 43}?id={b['fivetran_connection_id']}"
        status = 404
    elif attack == "replayed":
        url = f"{urlsplit(redirect_b).path}?id={b['fivetran_connection_id']}"
        status = 400
    elif attack == "foreign":  # A's token with B's (set-up) connection
        url = f"/connect-card/return/{token_a}?id={b['fivetran_connection_id']}"
        status = 400
    elif attack == "expired":
        async with app.state.sessionmaker() as s, s.begin():
            await s.execute(
                update(ConnectCardLink).values(expires_at=utcnow() - timedelta(seconds=1))
            )
        before = await _snapshot(api, count_rows, a["id"], b["id"])
        url = f"{urlsplit(redirect_b).path}?id={b['fivetran_connection_id']}"
        status = 400
    else:  # missing token
        url = f"/connect-card/return/?id={b['fivetran_connection_id']}"
        status = 404
    r = await api.get(url)
    assert r.status_code == status, (r.status_code, r.text)
    assert "location" not in r.headers
    if status != 404 or attack == "forged":
        assert "text/html" in r.headers["content-type"]
        assert r.headers["cache-control"] == "no-store"
    assert await _snapshot(api, count_rows, a["id"], b["id"]) == before
    if attack != "replayed":
        assert (await api.get(f"/v1/connections/{b['id']}")).json()["state"] == "authorizing"
    assert (await api.get(f"/v1/connections/{a['id']}")).json()["state"] == "authorizing"


async def test_newer_card_supersedes_the_older(
    api: httpx.AsyncClient, count_rows: CountRows
) -> None:
    await _end_user(api)
    conn = await _create(api, "slack")
    old = await _card(api, conn["id"])
    new = await _card(api, conn["id"])
    assert await count_rows("connect_card_links", "status = 'superseded'") == 1
    r = await _fill_card(api, old["connect_card_url"])  # Fivetran's old card still works…
    r = await api.get(_path(r.headers["location"]))
    assert r.status_code == 400  # …but its return to us does not
    assert (await api.get(f"/v1/connections/{conn['id']}")).json()["state"] == "authorizing"
    r = await _fill_card(api, new["connect_card_url"])
    r = await api.get(_path(r.headers["location"]))
    assert parse_qs(urlsplit(r.headers["location"]).query)["status"] == ["connected"]
