"""The Fivetran simulator rejects what Fivetran rejects, with the real status and code, and
behaves statefully: setup tests, schema config, paging, signed webhooks, control API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest

from app.fivetran.payloads import auth_block_for, build_create_payload
from tests.fixtures.fivetran import HOOK_BASE, SIM_BASE, Env

pytestmark = pytest.mark.db_independent  # never uses the database under test

AUTH = "Basic " + base64.b64encode(b"sandbox_key:sandbox_secret").decode()


async def api(
    env: Env,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    **kw: Any,
) -> httpx.Response:
    hdrs = {"Authorization": AUTH, "Accept": "application/json;version=2"}
    hdrs.update(headers or {})
    return await env.raw.request(method, SIM_BASE + path, json=body, headers=hdrs, **kw)


async def group(env: Env, name: str = "acme") -> str:
    r = await api(env, "POST", "/v1/groups", {"name": name})
    assert r.status_code == 201, r.text
    return r.json()["data"]["id"]


def sf_body(gid: str, schema: str = "sf_acme", token: str = "rt-1") -> dict[str, Any]:
    auth = auth_block_for("salesforce", client_id="c", client_secret="s", refresh_token=token)
    return build_create_payload("salesforce", group_id=gid, schema=schema, config={}, auth=auth)


def assert_error(r: httpx.Response, status: int, code: str, *fragments: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code, body
    assert "data" not in body
    for fragment in fragments:
        assert fragment in body["message"], body


async def test_unauthenticated_and_wrong_credentials(env: Env) -> None:
    r = await env.raw.get(SIM_BASE + "/v1/groups")
    assert_error(r, 401, "AuthFailed", "Missing authorization header")
    bad = "Basic " + base64.b64encode(b"sandbox_key:nope").decode()
    r = await env.raw.get(SIM_BASE + "/v1/groups", headers={"Authorization": bad})
    assert_error(r, 401, "AuthFailed")
    r = await env.raw.get(SIM_BASE + "/v1/groups", headers={"Authorization": "Bearer x"})
    assert_error(r, 401, "AuthFailed")
    r = await env.raw.post(SIM_BASE + "/v1/groups", json={"name": "x"})
    assert r.status_code == 401 and env.sim.state.groups == {}


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda b: b.pop("group_id"), "Field 'group_id' is required"),
        (lambda b: b.pop("service"), "Field 'service' is required"),
        (lambda b: b.update(service="share_point_x"), "Unsupported service 'share_point_x'"),
        (lambda b: b["config"].pop("schema"), "Field 'config.schema' is required"),
        (lambda b: b.pop("config"), "Field 'config.schema' is required"),
        (
            lambda b: b["config"].update(authentication_method="MAGIC"),
            "config.authentication_method",
        ),
        (lambda b: b.update(sync_frequency=7), "sync_frequency"),
        (lambda b: b.update(schedule_type="sometimes"), "schedule_type"),
        (lambda b: b["config"].update(domain="acme"), "config.domain"),
        (lambda b: b["auth"].update(access_token="x"), "auth.access_token"),
    ],
)
async def test_create_rejections(env: Env, mutate: Any, fragment: str) -> None:
    gid = await group(env)
    body = sf_body(gid)
    mutate(body)
    r = await api(env, "POST", "/v1/connections", body)
    assert_error(r, 400, "InvalidInput", fragment)
    assert env.sim.state.connections == {}


async def test_duplicate_schema_in_a_group_is_409_conflict(env: Env) -> None:
    gid = await group(env)
    assert (await api(env, "POST", "/v1/connections", sf_body(gid))).status_code == 201
    r = await api(env, "POST", "/v1/connections", sf_body(gid))
    assert_error(r, 409, "Conflict", "sf_acme")
    other = await group(env, "other")
    assert (await api(env, "POST", "/v1/connections", sf_body(other))).status_code == 201
    assert len(env.sim.state.connections) == 2


async def test_unknown_ids_and_groups(env: Env) -> None:
    r = await api(env, "POST", "/v1/connections", sf_body("no_group"))
    assert_error(r, 404, "NotFound_Group")
    r = await api(env, "GET", "/v1/connections/nope")
    assert_error(r, 404, "NotFound_Integration", "Cannot find entity 'Integration' with id 'nope'")
    r = await api(env, "GET", "/v1/webhooks/nope")
    assert_error(r, 404, "NotFound_Webhook")
    r = await api(env, "GET", "/v1/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == "NotFound"


async def test_accept_and_content_type(env: Env) -> None:
    r = await api(env, "GET", "/v1/groups", headers={"Accept": "text/html"})
    assert_error(r, 406, "NotAcceptable")
    r = await api(env, "GET", "/v1/groups", headers={"Accept": "application/json;version=9"})
    assert r.status_code == 406
    for accept in ("application/json", "application/json;version=2", "*/*"):
        assert (await api(env, "GET", "/v1/groups", headers={"Accept": accept})).status_code == 200
    r = await env.raw.post(
        SIM_BASE + "/v1/groups",
        content=b'{"name":"x"}',
        headers={"Authorization": AUTH, "Content-Type": "text/plain"},
    )
    assert_error(r, 415, "UnsupportedMediaType")
    r = await env.raw.post(
        SIM_BASE + "/v1/groups",
        content=b"{not json",
        headers={"Authorization": AUTH, "Content-Type": "application/json"},
    )
    assert_error(r, 400, "InvalidInput")


async def test_group_rules(env: Env) -> None:
    await group(env, "acme")
    assert_error(await api(env, "POST", "/v1/groups", {"name": "acme"}), 409, "Conflict")
    assert_error(await api(env, "POST", "/v1/groups", {"name": "1-bad"}), 400, "InvalidInput")
    assert_error(await api(env, "POST", "/v1/groups", {}), 400, "InvalidInput", "name")


async def test_legacy_connectors_alias(env: Env) -> None:
    gid = await group(env)
    created = (await api(env, "POST", "/v1/connectors", sf_body(gid))).json()["data"]
    via_new = (await api(env, "GET", f"/v1/connections/{created['id']}")).json()["data"]
    via_old = (await api(env, "GET", f"/v1/connectors/{created['id']}")).json()["data"]
    assert via_new == via_old
    listed = (await api(env, "GET", f"/v1/groups/{gid}/connectors")).json()["data"]["items"]
    assert [c["id"] for c in listed] == [created["id"]]
    r = await api(env, "POST", f"/v1/connectors/{created['id']}/force")
    assert r.status_code == 200


async def test_pagination_cursors_and_limits(env: Env) -> None:
    for i in range(5):
        await group(env, f"g{i}")
    r = await api(env, "GET", "/v1/groups", params={"limit": 2})
    data = r.json()["data"]
    assert len(data["items"]) == 2
    cursor = data["next_cursor"]
    assert cursor == "eyJza2lwIjoyfQ"  # unpadded base64 of {"skip":2}
    assert json.loads(base64.b64decode(cursor + "==")) == {"skip": 2}
    r = await api(env, "GET", "/v1/groups", params={"limit": 2, "cursor": "eyJza2lwIjo0fQ"})
    last = r.json()["data"]
    assert len(last["items"]) == 1 and "next_cursor" not in last
    for bad in ("0", "1001", "x"):
        r = await api(env, "GET", "/v1/groups", params={"limit": bad})
        assert_error(r, 400, "InvalidInput", "limit")
    r = await api(env, "GET", "/v1/groups", params={"cursor": "!!!"})
    assert_error(r, 400, "InvalidInput", "cursor")
    r = await api(env, "GET", "/v1/groups", params={"limit": 1000})
    assert len(r.json()["data"]["items"]) == 5


async def test_patch_rules(env: Env) -> None:
    gid = await group(env)
    cid = (await api(env, "POST", "/v1/connections", sf_body(gid))).json()["data"]["id"]
    r = await api(env, "PATCH", f"/v1/connections/{cid}", {"run_setup_tests": True})
    assert_error(r, 400, "InvalidInput", "persistent")
    r = await api(env, "PATCH", f"/v1/connections/{cid}", {"config": {"schema": "renamed"}})
    assert_error(r, 400, "InvalidInput", "config.schema", "cannot be changed")
    r = await api(env, "PATCH", f"/v1/connections/{cid}", {"paused": "yes"})
    assert_error(r, 400, "InvalidInput", "paused")
    r = await api(env, "PATCH", f"/v1/connections/{cid}", {"sync_frequency": 60})
    assert r.status_code == 200 and r.json()["data"]["sync_frequency"] == 60


async def test_oauth_setup_tests_introspect_the_handed_over_token(env: Env) -> None:
    gid = await group(env)
    r = await api(env, "POST", "/v1/connections", sf_body(gid, token="revoked-token"))
    created = r.json()["data"]
    assert created["setup_tests"] == [
        {
            "title": "Validate Login",
            "status": "FAILED",
            "message": created["setup_tests"][0]["message"],
        }
    ]
    assert "Re-authorize" in created["setup_tests"][0]["message"]
    assert created["status"]["setup_state"] == "incomplete"
    assert env.tokens.calls == [("salesforce", "revoked-token")]
    # Re-authorization with an active token passes and connects.
    env.tokens.active.add("fresh")
    auth = auth_block_for("salesforce", client_id="c", client_secret="s", refresh_token="fresh")
    r = await api(
        env, "PATCH", f"/v1/connections/{created['id']}", {"auth": auth, "run_setup_tests": True}
    )
    data = r.json()["data"]
    assert data["setup_tests"][0]["status"] == "PASSED"
    assert data["status"]["setup_state"] == "connected"
    # No auth block at all: cannot log in.
    body = build_create_payload("hubspot", group_id=gid, schema="hs", config={})
    r = await api(env, "POST", "/v1/connections", body)
    assert r.json()["data"]["setup_tests"][0]["status"] == "FAILED"
    assert r.json()["data"]["status"]["setup_state"] == "incomplete"


async def test_checker_failure_fails_the_test_not_the_request(env: Env) -> None:
    async def broken(service: str, token: str) -> bool:
        raise RuntimeError("oauth server down")

    env.sim.checker = broken
    gid = await group(env)
    r = await api(env, "POST", "/v1/connections", sf_body(gid))
    assert r.status_code == 201
    assert "Could not verify" in r.json()["data"]["setup_tests"][0]["message"]


async def test_credential_sources_fail_on_invalid_values(env: Env) -> None:
    gid = await group(env)
    good = build_create_payload(
        "postgres", group_id=gid, schema="pg", config={"host": "h", "user": "u", "password": "pw"}
    )
    r = await api(env, "POST", "/v1/connections", good)
    data = r.json()["data"]
    assert data["setup_tests"] == [
        {"title": "Host Connection", "status": "PASSED", "message": ""},
        {"title": "Validate Credentials", "status": "PASSED", "message": ""},
    ]
    assert data["status"]["setup_state"] == "connected"
    assert data["config"]["password"] == "******"
    bad = build_create_payload(
        "mysql", group_id=gid, schema="my", config={"host": "h", "user": "u", "password": "invalid"}
    )
    r = await api(env, "POST", "/v1/connections", bad)
    test = r.json()["data"]["setup_tests"][1]
    assert test["status"] == "FAILED" and "config.password" in test["message"]
    assert r.json()["data"]["status"]["setup_state"] == "incomplete"


@pytest.mark.parametrize(
    ("config", "title", "needle"),
    [
        # What a user would expect to fail (the sandbox rules documented in the README).
        ({"host": "db.example.com", "user": "u"}, "Validate Credentials", "Missing credentials"),
        (
            {"host": "db.example.com", "user": "u", "password": ""},
            "Validate Credentials",
            "Missing",
        ),
        ({"host": "fail.invalid", "user": "u", "password": "pw"}, "Host Connection", "resolve"),
        ({"host": "invalid", "user": "u", "password": "pw"}, "Host Connection", "resolve"),
        ({"host": "db..example", "user": "u", "password": "pw"}, "Host Connection", "resolve"),
        ({"host": "h", "port": 0, "user": "u", "password": "pw"}, "Host Connection", "port"),
        ({"host": "h", "port": 65536, "user": "u", "password": "pw"}, "Host Connection", "port"),
        (
            {"host": "h", "port": 5432, "user": "u", "password": "wrong"},
            "Validate Credentials",
            "password",
        ),
    ],
)
async def test_credential_setup_tests_fail_like_a_user_expects(
    env: Env, config: dict[str, Any], title: str, needle: str
) -> None:
    gid = await group(env)
    body = build_create_payload("postgres", group_id=gid, schema="pg", config=config)
    r = await api(env, "POST", "/v1/connections", body)
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    failed = [t for t in data["setup_tests"] if t["status"] == "FAILED"]
    assert [t["title"] for t in failed] == [title]
    assert needle in failed[0]["message"]
    assert data["status"]["setup_state"] == "incomplete"
    if title == "Host Connection":  # nothing is tried past an unreachable host
        assert data["setup_tests"][-1] == {
            "title": "Validate Credentials",
            "status": "SKIPPED",
            "message": "Skipped: Host Connection failed",
        }
    # Fixing the value through a PATCH passes the tests (the connection is not stuck).
    fixed = {"host": "db.example.com", "port": 5432, "password": "pw"}
    r = await api(env, "PATCH", f"/v1/connections/{data['id']}", {"config": fixed})
    assert r.json()["data"]["status"]["setup_state"] == "connected", r.text


async def test_ssh_tunnel_needs_fingerprint_approval_or_trust(env: Env) -> None:
    gid = await group(env)
    cfg = {
        "host": "db",
        "user": "u",
        "password": "pw",
        "tunnel_host": "bastion.example.com",
        "tunnel_port": 22,
        "tunnel_user": "fivetran",
    }
    trusted = build_create_payload(
        "postgres", group_id=gid, schema="pg_t", config=cfg, trust_fingerprints=True
    )
    r = await api(env, "POST", "/v1/connections", trusted)
    assert [t["status"] for t in r.json()["data"]["setup_tests"]] == ["PASSED", "PASSED", "PASSED"]
    cid = r.json()["data"]["id"]
    listed = (await api(env, "GET", f"/v1/connections/{cid}/fingerprints")).json()["data"]
    assert len(listed["items"]) == 1
    plain = build_create_payload("postgres", group_id=gid, schema="pg_u", config=cfg)
    r = await api(env, "POST", "/v1/connections", plain)
    tests = r.json()["data"]["setup_tests"]
    assert tests[0]["status"] == "FAILED" and tests[1]["status"] == "SKIPPED"
    assert tests[0]["details"]["public_key"].startswith("ssh-rsa ")
    digest = hashlib.sha256(base64.b64decode(tests[0]["details"]["public_key"].split()[1]))
    assert tests[0]["details"]["hash"] == base64.b64encode(digest.digest()).decode().rstrip("=")
    r = await api(env, "POST", f"/v1/connections/{r.json()['data']['id']}/test", {})
    assert r.json()["data"]["setup_tests"][0]["status"] == "FAILED"  # still not approved
    r = await api(
        env, "POST", f"/v1/connections/{r.json()['data']['id']}/test", {"trust_fingerprints": True}
    )
    assert r.json()["data"]["status"]["setup_state"] == "connected"


async def test_test_endpoint_requires_a_body(env: Env) -> None:
    gid = await group(env)
    cid = (await api(env, "POST", "/v1/connections", sf_body(gid))).json()["data"]["id"]
    r = await api(env, "POST", f"/v1/connections/{cid}/test")
    assert_error(r, 400, "InvalidInput")


async def test_schema_config_is_deterministic_and_needs_a_reload_or_sync(env: Env) -> None:
    gid = await group(env)
    env.tokens.active.add("rt-1")
    a = (await api(env, "POST", "/v1/connections", sf_body(gid, "sf_a"))).json()["data"]["id"]
    b = (await api(env, "POST", "/v1/connections", sf_body(gid, "sf_b"))).json()["data"]["id"]
    assert_error(
        await api(env, "GET", f"/v1/connections/{a}/schemas"), 404, "NotFound_SchemaConfig"
    )
    one = (await api(env, "POST", f"/v1/connections/{a}/schemas/reload", {})).json()["data"]
    r = await env.control("POST", f"/connections/{b}/sync-result", {"status": "SUCCESSFUL"})
    assert r.status_code == 200
    two = (await api(env, "GET", f"/v1/connections/{b}/schemas")).json()["data"]
    # same service → same tables; each lands in its own destination schema
    assert one["schemas"]["salesforce"]["tables"] == two["schemas"]["salesforce"]["tables"]
    assert one["schemas"]["salesforce"]["name_in_destination"] == "sf_a"
    assert two["schemas"]["salesforce"]["name_in_destination"] == "sf_b"
    assert one["schema_change_handling"] == "ALLOW_ALL"
    r = await api(env, "POST", f"/v1/connections/{a}/schemas/reload", {"exclude_mode": "NOPE"})
    assert_error(r, 400, "InvalidInput", "exclude_mode")
    r = await api(
        env, "PATCH", f"/v1/connections/{a}/schemas", {"schema_change_handling": "SOMETIMES"}
    )
    assert_error(r, 400, "InvalidInput", "schema_change_handling")
    table = next(iter(one["schemas"]["salesforce"]["tables"]))
    path = {"schemas": {"salesforce": {"tables": {table: {"columns": {"id": {"enabled": False}}}}}}}
    r = await api(env, "PATCH", f"/v1/connections/{a}/schemas", path)
    assert_error(r, 400, "InvalidInput", "cannot be changed")  # primary key column is locked


async def test_resync_rules(env: Env) -> None:
    gid = await group(env)
    cid = (await api(env, "POST", "/v1/connections", sf_body(gid))).json()["data"]["id"]
    r = await api(env, "POST", f"/v1/connections/{cid}/resync", {"scope": {}})
    assert_error(r, 400, "InvalidInput", "scope")
    r = await api(env, "POST", f"/v1/connections/{cid}/resync", {"scope": {"s": []}})
    assert_error(r, 400, "InvalidInput")
    assert (
        await api(env, "POST", f"/v1/connections/{cid}/sync", {"force": False})
    ).status_code == 200
    r = await api(env, "POST", f"/v1/connections/{cid}/resync")
    assert_error(r, 409, "Conflict")


async def test_webhook_url_rules_and_masked_secret(env: Env) -> None:
    for url in ("http://hooks.example.com/x", "ftp://x", "", "https://"):
        r = await api(env, "POST", "/v1/webhooks/account", {"url": url, "events": ["sync_end"]})
        assert_error(r, 400, "InvalidInput")
    r = await api(env, "POST", "/v1/webhooks/account", {"url": "https://x.example", "events": []})
    assert_error(r, 400, "InvalidInput", "events")
    r = await api(
        env, "POST", "/v1/webhooks/account", {"url": "https://x.example", "events": ["bogus"]}
    )
    assert_error(r, 400, "InvalidInput", "bogus")
    for url in ("http://127.0.0.1:8000/hook", "http://localhost/hook", "https://x.example/h"):
        r = await api(
            env,
            "POST",
            "/v1/webhooks/account",
            {"url": url, "events": ["sync_end"], "secret": "topsecret"},
        )
        assert r.status_code == 200, r.text  # Fivetran answers 200 here, not 201
        assert r.json()["data"]["secret"] == "******"
    listed = (await api(env, "GET", "/v1/webhooks")).text
    assert "topsecret" not in listed
    assert "topsecret" not in json.dumps(list(env.sim.state.requests))


async def test_signed_webhook_events_for_the_lifecycle(env: Env) -> None:
    gid = await group(env)
    other = await group(env, "other")
    secret = "whsec-123"
    all_events = [
        "create_connector",
        "pause_connector",
        "resume_connector",
        "edit_connector",
        "delete_connector",
        "sync_start",
        "sync_end",
        "connection_failure",
        "connection_successful",
    ]
    r = await api(
        env,
        "POST",
        "/v1/webhooks/account",
        {"url": f"{HOOK_BASE}/account", "events": all_events, "secret": secret},
    )
    assert r.status_code == 200
    await api(
        env,
        "POST",
        f"/v1/webhooks/group/{other}",
        {"url": f"{HOOK_BASE}/other-group", "events": all_events, "secret": "x"},
    )
    await api(
        env,
        "POST",
        "/v1/webhooks/account",
        {"url": f"{HOOK_BASE}/inactive", "events": all_events, "active": False},
    )

    env.tokens.active.add("rt-1")
    created = (await api(env, "POST", "/v1/connections", sf_body(gid))).json()["data"]
    cid = created["id"]
    await api(env, "PATCH", f"/v1/connections/{cid}", {"paused": False})
    await api(env, "PATCH", f"/v1/connections/{cid}", {"paused": True})
    await api(env, "PATCH", f"/v1/connections/{cid}", {"sync_frequency": 1440})
    await env.control("POST", f"/connections/{cid}/sync-result", {"status": "SUCCESSFUL"})
    await env.control(
        "POST", f"/connections/{cid}/sync-result", {"status": "FAILED", "reason": "boom"}
    )
    r = await env.control("POST", f"/connections/{cid}/break")
    assert r.json()["data"]["status"]["setup_state"] == "broken"
    assert r.json()["data"]["status"]["tasks"][0]["code"] == "reconnect"
    await api(env, "DELETE", f"/v1/connections/{cid}")
    assert (await env.control("POST", "/webhooks/drain")).status_code == 200

    received = env.receiver.received
    assert {r["url"] for r in received} == {f"{HOOK_BASE}/account"}
    for item in received:
        expected = hmac.new(secret.encode(), item["body"], hashlib.sha256).hexdigest().upper()
        assert item["headers"]["x-fivetran-signature-256"] == expected
    events = [json.loads(r["body"]) for r in received]
    names = [e["event"] for e in events]
    assert names == [
        "create_connector",
        "connection_successful",
        "resume_connector",
        "sync_start",  # the first unpause starts the historical sync
        "pause_connector",
        "edit_connector",
        "sync_end",
        "sync_start",
        "sync_end",
        "connection_failure",
        "delete_connector",
    ]
    first = events[0]
    assert set(first) == {
        "event",
        "created",
        "connector_type",
        "connector_id",
        "connector_name",
        "destination_group_id",
        "data",
    }
    assert first["connector_type"] == "salesforce" and first["connector_id"] == cid
    assert first["connector_name"] == "sf_acme" and first["destination_group_id"] == gid
    assert first["created"].endswith("Z")
    starts = [e for e in events if e["event"] == "sync_start"]
    ends = [e for e in events if e["event"] == "sync_end"]
    assert [e["sync_id"] for e in starts] == [e["sync_id"] for e in ends]
    assert ends[0]["data"] == {"status": "SUCCESSFUL"}
    assert ends[1]["data"]["status"] == "FAILED" and ends[1]["data"]["reason"] == "boom"


async def test_webhook_delivery_failures_are_logged_not_raised(env: Env) -> None:
    env.receiver.status = 500
    gid = await group(env)
    await api(
        env,
        "POST",
        "/v1/webhooks/account",
        {"url": f"{HOOK_BASE}/h", "events": ["create_connector"], "secret": "s"},
    )
    r = await api(env, "POST", "/v1/connections", sf_body(gid))
    assert r.status_code == 201
    deliveries = (await env.control("GET", "/deliveries")).json()["data"]["items"]
    assert deliveries[-1]["status"] == 500 and deliveries[-1]["event"] == "create_connector"
    wid = next(iter(env.sim.state.webhooks))
    r = await api(env, "POST", f"/v1/webhooks/{wid}/test", {"event": "sync_end"})
    assert r.json()["data"]["succeed"] is False and r.json()["data"]["status"] == 500


async def test_control_faults_requests_and_reset(env: Env) -> None:
    await env.fault(method="GET", path_regex="^/v1/groups$", status=503, count=2, code="Boom")
    for _ in range(2):
        r = await api(env, "GET", "/v1/groups")
        assert_error(r, 503, "Boom")
    assert (await api(env, "GET", "/v1/groups")).status_code == 200
    await env.fault(method="GET", path_regex="^/v1/groups$", status=429, retry_after=12, count=1)
    r = await api(env, "GET", "/v1/groups")
    assert r.status_code == 429 and r.headers["Retry-After"] == "12"
    assert r.json()["code"] == "TooManyRequests"
    r = await env.control("POST", "/faults", {"path_regex": "("})
    assert r.status_code == 400
    await env.fault(method="GET", path_regex=".", status=500, count=5)
    await env.control("DELETE", "/faults")
    assert (await api(env, "GET", "/v1/groups")).status_code == 200
    gid = await group(env)
    await api(env, "POST", "/v1/connections", sf_body(gid, token="tok-should-not-leak"))
    log = (await env.control("GET", "/requests")).json()["data"]["items"]
    assert [e["status"] for e in log[:2]] == [503, 503]
    assert "tok-should-not-leak" not in json.dumps(log)
    assert (await env.control("POST", "/reset")).status_code == 200
    assert env.sim.state.groups == {} and env.sim.state.connections == {}
    assert (await env.control("POST", "/connections/nope/break")).status_code == 404


async def test_connect_card_config_and_destination_patch(env: Env) -> None:
    gid = await group(env)
    body = build_create_payload(
        "hubspot", group_id=gid, schema="hs", config={}, run_setup_tests=False
    )
    body["connect_card_config"] = {"redirect_uri": "https://app.example/done"}
    data = (await api(env, "POST", "/v1/connections", body)).json()["data"]
    # the simulated card page of the simulator itself (app.sandbox.fivetran.connect_card)
    assert "/connect-card/setup?redirect_uri=https" in data["connect_card"]["uri"]
    assert data["setup_tests"] == [] and data["status"]["setup_state"] == "incomplete"
    body = {
        "group_id": gid,
        "service": "big_query",
        "time_zone_offset": "0",
        "config": {"project_id": "p"},
    }
    assert (await api(env, "POST", "/v1/destinations", body)).status_code == 201
    r = await api(env, "POST", "/v1/destinations", body)
    assert_error(r, 409, "Conflict")
    r = await api(env, "PATCH", f"/v1/destinations/{gid}", {"config": {"project_id": "invalid"}})
    assert r.json()["data"]["setup_status"] == "incomplete"
    assert_error(
        await api(env, "PATCH", f"/v1/destinations/{gid}", {"nope": 1}), 400, "InvalidInput"
    )
    for missing in ("group_id", "service", "time_zone_offset"):
        partial = {k: v for k, v in body.items() if k != missing}
        r = await api(env, "POST", "/v1/destinations", partial)
        assert_error(r, 400, "InvalidInput", f"Field '{missing}' is required")
    r = await api(env, "POST", "/v1/destinations", dict(body, service="share_point"))
    assert_error(r, 400, "InvalidInput", "Unsupported service 'share_point'")


async def test_rescheduled_sync(env: Env) -> None:
    gid = await group(env)
    cid = (await api(env, "POST", "/v1/connections", sf_body(gid))).json()["data"]["id"]
    await api(env, "PATCH", f"/v1/connections/{cid}", {"paused": False})
    r = await env.control("POST", f"/connections/{cid}/sync-result", {"status": "RESCHEDULED"})
    status = r.json()["data"]["status"]
    assert status["sync_state"] == "rescheduled" and status["rescheduled_for"].endswith("Z")
    r = await env.control("POST", f"/connections/{cid}/sync-result", {"status": "SUCCESSFUL"})
    assert r.json()["data"]["status"]["sync_state"] == "scheduled"
    assert "rescheduled_for" not in r.json()["data"]["status"]
    r = await env.control("POST", f"/connections/{cid}/sync-result", {"status": "DONE"})
    assert_error(r, 400, "InvalidInput", "status")
