"""FivetranClient against the simulator over ASGI: every operation, paging, errors, retries."""

from __future__ import annotations

import itertools

import httpx
import pytest

from app.config import Settings
from app.fivetran.budget import LocalTokenBucket
from app.fivetran.client import V1, V2, FivetranClient
from app.fivetran.errors import (
    FivetranAmbiguous,
    FivetranAuthFailed,
    FivetranBudgetExhausted,
    FivetranConflict,
    FivetranError,
    FivetranForbidden,
    FivetranInvalidInput,
    FivetranNotFound,
    FivetranServerError,
    FivetranTooManyRequests,
    FivetranUnavailable,
)
from app.fivetran.payloads import PayloadError, auth_block_for, build_create_payload
from app.fivetran.startup import build_fivetran_client
from tests.fixtures.fivetran import HOOK_BASE, SIM_BASE, Env, Sleeps

pytestmark = pytest.mark.db_independent  # never uses the database under test

_names = itertools.count()


async def _group(env: Env, name: str | None = None) -> str:
    return (await env.client.create_group(name or f"acme_{next(_names)}"))["id"]


async def _salesforce(env: Env, group_id: str, schema: str = "sf_acme", token: str = "rt-1"):
    env.tokens.active.add(token)
    auth = auth_block_for("salesforce", client_id="cid", client_secret="cs", refresh_token=token)
    body = build_create_payload(
        "salesforce", group_id=group_id, schema=schema, config={}, auth=auth
    )
    return await env.client.create_connection(body)


def _client(env: Env, http: httpx.AsyncClient | None = None, **kw) -> FivetranClient:
    defaults = dict(
        base_url=SIM_BASE,
        api_key="sandbox_key",
        api_secret="sandbox_secret",
        budget=LocalTokenBucket(10_000, sleep=env.sleeps),
        sleep=env.sleeps,
        rng=lambda: 0.5,
    )
    defaults.update(kw)
    return FivetranClient(http or env.raw, **defaults)  # type: ignore[arg-type]


async def test_account_and_groups(env: Env) -> None:
    info = await env.client.account_info()
    assert info["account_id"] == "sandbox_account"
    gid = await _group(env, "acme")
    assert (await env.client.get_group(gid))["name"] == "acme"
    assert [g["id"] for g in await env.client.list_groups()] == [gid]
    key = await env.client.group_public_key(gid)
    assert key.startswith("ssh-rsa AAAAB3NzaC1yc2E") and key.endswith("fivetran user key")
    await _salesforce(env, gid)
    await _salesforce(env, gid, schema="sf_other")
    assert len(await env.client.list_group_connections(gid)) == 2
    only = await env.client.list_group_connections(gid, schema="sf_other")
    assert [c["schema"] for c in only] == ["sf_other"]
    await env.client.delete_group(gid)
    with pytest.raises(FivetranNotFound) as info:
        await env.client.get_group(gid)
    assert info.value.code == "NotFound_Group"
    assert await env.client.list_connections() == []


async def test_destinations(env: Env) -> None:
    gid = await _group(env)
    dest = await env.client.create_destination(
        {
            "group_id": gid,
            "service": "snowflake",
            "time_zone_offset": "0",
            "region": "GCP_US_EAST4",
            "config": {"host": "acct.snowflakecomputing.com", "password": "pw"},
        }
    )
    assert dest["id"] == gid and dest["setup_status"] == "connected"
    assert dest["config"]["password"] == "******"
    assert (await env.client.get_destination(gid))["service"] == "snowflake"
    tested = await env.client.test_destination(gid)
    assert tested["setup_tests"][0]["status"] == "PASSED"
    await env.client.delete_destination(gid)
    with pytest.raises(FivetranNotFound) as info:
        await env.client.get_destination(gid)
    assert info.value.code == "NotFound_Destination"


async def test_connection_lifecycle(env: Env) -> None:
    gid = await _group(env)
    created = await _salesforce(env, gid)
    cid = created["id"]
    assert created["status"]["setup_state"] == "connected"
    assert created["paused"] is True
    assert "auth" not in created
    assert (await env.client.get_connection(cid))["schema"] == "sf_acme"
    assert [c["id"] for c in await env.client.list_connections(group_id=gid)] == [cid]
    assert await env.client.list_connections(group_id=gid, schema="nope") == []
    assert (await env.client.find_connection(gid, "sf_acme"))["id"] == cid  # type: ignore[index]
    assert await env.client.find_connection(gid, "missing") is None

    unpaused = await env.client.update_connection(cid, {"paused": False})
    # The first unpause starts the historical sync, as at Fivetran.
    assert unpaused["paused"] is False and unpaused["status"]["sync_state"] == "syncing"
    await env.control("POST", f"/connections/{cid}/sync-result", {"status": "SUCCESSFUL"})
    assert (await env.client.get_connection(cid))["status"]["sync_state"] == "scheduled"
    env.tokens.active.add("rt-2")
    auth = auth_block_for("salesforce", client_id="cid", client_secret="cs", refresh_token="rt-2")
    reauthed = await env.client.update_connection(cid, {"auth": auth, "run_setup_tests": True})
    assert reauthed["setup_tests"][0]["status"] == "PASSED"
    assert ("salesforce", "rt-2") in env.tokens.calls

    assert "triggered" in (await env.client.sync_connection(cid))["message"]
    assert (await env.client.get_connection(cid))["status"]["sync_state"] == "syncing"
    await env.control("POST", f"/connections/{cid}/sync-result", {"status": "SUCCESSFUL"})
    await env.client.sync_connection(cid, force=True)
    assert env.requests("POST", f"/v1/connections/{cid}/sync")[-1]["body"] == {"force": True}
    await env.control("POST", f"/connections/{cid}/sync-result", {"status": "SUCCESSFUL"})
    await env.client.resync_connection(cid, scope={"salesforce": ["accounts"]})
    await env.control("POST", f"/connections/{cid}/sync-result", {"status": "SUCCESSFUL"})
    await env.client.resync_connection(cid)
    assert env.requests("POST", f"/v1/connections/{cid}/resync")[-1]["body"] == {}
    tested = await env.client.run_setup_tests(cid, trust_certificates=True)
    assert tested["setup_tests"][0]["title"] == "Validate Login"

    await env.client.delete_connection(cid)
    with pytest.raises(FivetranNotFound) as info:
        await env.client.get_connection(cid)
    assert info.value.code == "NotFound_Integration"


async def test_schema_config(env: Env) -> None:
    gid = await _group(env)
    cid = (await _salesforce(env, gid))["id"]
    with pytest.raises(FivetranNotFound) as info:
        await env.client.get_schema_config(cid)
    assert info.value.code == "NotFound_SchemaConfig"
    reloaded = await env.client.reload_schema_config(cid)
    assert list(reloaded["schemas"]) == ["salesforce"]
    table = next(iter(reloaded["schemas"]["salesforce"]["tables"]))
    patched = await env.client.update_schema_config(
        cid,
        {
            "schema_change_handling": "BLOCK_ALL",
            "schemas": {"salesforce": {"enabled": True, "tables": {table: {"enabled": False}}}},
        },
    )
    assert patched["schema_change_handling"] == "BLOCK_ALL"
    again = await env.client.get_schema_config(cid)
    assert again["schemas"]["salesforce"]["tables"][table]["enabled"] is False
    assert again["enable_new_by_default"] is False


async def test_certificates_and_fingerprints(env: Env) -> None:
    gid = await _group(env)
    body = build_create_payload(
        "postgres",
        group_id=gid,
        schema="pg",
        config={
            "host": "db.internal",
            "user": "u",
            "password": "pw",
            "tunnel_host": "bastion",
            "tunnel_port": 22,
            "tunnel_user": "ft",
        },
        networking_method="SshTunnel",
    )
    created = await env.client.create_connection(body)
    ssh = created["setup_tests"][0]
    assert ssh["title"] == "SSH Tunnel" and ssh["status"] == "FAILED"
    assert created["status"]["setup_state"] == "incomplete"
    details = ssh["details"]
    approved = await env.client.approve_fingerprint(
        created["id"], details["hash"], details["public_key"]
    )
    assert approved["hash"] == details["hash"]
    tested = await env.client.run_setup_tests(created["id"])
    assert [t["status"] for t in tested["setup_tests"]] == ["PASSED", "PASSED", "PASSED"]
    assert tested["status"]["setup_state"] == "connected"
    cert = await env.client.approve_certificate(created["id"], "aGFzaA", "Y2VydA==")
    assert cert["type"] == "TLS" and cert["hash"] == "aGFzaA"


async def test_webhooks(env: Env) -> None:
    gid = await _group(env)
    account = await env.client.create_account_webhook(
        f"{HOOK_BASE}/hook", ["sync_end"], secret="s3cret"
    )
    assert account["secret"] == "******" and account["type"] == "account"
    group = await env.client.create_group_webhook(
        gid, "https://hooks.example.com/x", ["sync_start"]
    )
    assert group["type"] == "group" and group["group_id"] == gid
    assert {w["id"] for w in await env.client.list_webhooks()} == {account["id"], group["id"]}
    updated = await env.client.update_webhook(account["id"], {"active": False})
    assert updated["active"] is False
    await env.client.update_webhook(account["id"], {"active": True})
    result = await env.client.test_webhook(account["id"], "sync_end")
    assert result == {"succeed": True, "status": 200, "message": "Success"}
    assert env.receiver.events()[-1]["connector_id"] == "_connection_1"
    await env.client.delete_webhook(group["id"])
    assert [w["id"] for w in await env.client.list_webhooks()] == [account["id"]]


async def test_accept_version2_exactly_where_the_definition_sets_it(env: Env) -> None:
    await test_connection_lifecycle(env)
    await test_destinations(env)
    await test_schema_config(env)
    v2_paths = (
        r"^/v1/connections(/[a-z_0-9]+)?(/(sync|resync|test))?$",
        r"^/v1/destinations(/[a-z_0-9]+)?(/test)?$",
    )
    import re

    seen = set()
    for r in env.sim.state.requests:
        expected = V2 if any(re.match(p, r["path"]) for p in v2_paths) else V1
        assert r["accept"] == expected, r
        seen.add(expected)
    assert seen == {V1, V2}


async def test_pagination_over_several_pages(env: Env) -> None:
    client = _client(env, page_size=2)
    for i in range(5):
        await client.create_group(f"g{i}")
    groups = await client.list_groups()
    assert sorted(g["name"] for g in groups) == [f"g{i}" for i in range(5)]
    pages = env.requests("GET", "/v1/groups")
    assert len(pages) == 3
    assert "cursor" not in pages[0]["query"] and "cursor=" in pages[1]["query"]


async def test_pagination_tolerates_camel_case_next_cursor(env: Env) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if "cursor" not in request.url.params:
            return httpx.Response(
                200,
                json={
                    "code": "Success",
                    "data": {"items": [{"id": "a"}], "nextCursor": "eyJza2lwIjoxfQ"},
                },
            )
        return httpx.Response(200, json={"code": "Success", "data": {"items": [{"id": "b"}]}})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    items = await _client(env, http).list_groups()
    assert [i["id"] for i in items] == ["a", "b"] and len(calls) == 2


async def test_error_classes(env: Env) -> None:
    gid = await _group(env)
    body = {"group_id": gid, "service": "nosuch", "config": {"schema": "x"}}
    with pytest.raises(PayloadError) as local:  # validated before sending
        await env.client.create_connection(body)
    assert local.value.field == "service"
    assert env.requests("POST", "/v1/connections") == []
    with pytest.raises(FivetranInvalidInput) as bad:
        await env.client.create_connection(body, validate=False)
    assert bad.value.status == 400 and bad.value.code == "InvalidInput"
    assert "Unsupported service" in bad.value.message and bad.value.request_id
    await _salesforce(env, gid)
    with pytest.raises(FivetranConflict) as dup:
        await _salesforce(env, gid)
    assert dup.value.code == "Conflict"
    with pytest.raises(FivetranAuthFailed) as denied:
        await _client(env, api_secret="wrong").list_groups()
    assert denied.value.status == 401 and denied.value.code == "AuthFailed"
    await env.fault(method="GET", path_regex="^/v1/groups$", status=403, count=1)
    with pytest.raises(FivetranForbidden):
        await env.client.list_groups()
    with pytest.raises(FivetranNotFound):
        await env.client.get_connection("nope")
    # all are FivetranError, keyed on status + code
    assert issubclass(FivetranConflict, FivetranError)


async def test_errors_never_carry_secrets(env: Env) -> None:
    gid = await _group(env)
    env.tokens.active.add("super-secret-refresh")
    auth = auth_block_for(
        "salesforce",
        client_id="cid",
        client_secret="very-secret",
        refresh_token="super-secret-refresh",
    )
    body = build_create_payload("salesforce", group_id=gid, schema="s1", config={}, auth=auth)
    await env.client.create_connection(body)
    with pytest.raises(FivetranConflict) as dup:
        await env.client.create_connection(body)
    await env.fault(method="POST", path_regex="^/v1/connections$", status=502, count=1, after=True)
    body2 = dict(body, config={"schema": "s2"})
    with pytest.raises(FivetranAmbiguous) as amb:
        await env.client.create_connection(body2)
    for exc in (dup.value, amb.value):
        text = repr(vars(exc)) + str(exc) + repr(exc)
        assert "super-secret-refresh" not in text and "very-secret" not in text
        assert "sandbox_secret" not in text
    assert "sandbox_secret" not in repr(env.client)


async def test_429_waits_retry_after_and_retries_even_a_create(env: Env) -> None:
    gid = await _group(env)
    await env.fault(
        method="POST", path_regex="^/v1/connections$", status=429, retry_after=7, count=1
    )
    created = await _salesforce(env, gid)
    assert created["id"]
    assert env.sleeps.calls == [7.0]
    assert [r["status"] for r in env.requests("POST", "/v1/connections")] == [429, 201]


async def test_429_retry_after_beyond_the_bound_raises(env: Env) -> None:
    await env.fault(method="GET", path_regex="^/v1/groups$", status=429, retry_after=3600, count=1)
    with pytest.raises(FivetranTooManyRequests) as info:
        await env.client.list_groups()
    assert info.value.retry_after == 3600 and info.value.code == "TooManyRequests"
    assert env.sleeps.calls == []  # no inline hour-long wait
    assert len(env.requests("GET", "/v1/groups")) == 1


async def test_429_gives_up_after_max_retries(env: Env) -> None:
    await env.fault(method="GET", path_regex="^/v1/groups$", status=429, retry_after=1, count=10)
    with pytest.raises(FivetranTooManyRequests):
        await env.client.list_groups()
    assert env.sleeps.calls == [1.0, 1.0, 1.0]
    assert len(env.requests("GET", "/v1/groups")) == 4


async def test_the_first_retry_delay_is_a_setting() -> None:
    """``fivetran.retry_backoff_seconds`` reaches the client the service builds."""
    async with httpx.AsyncClient() as http:
        default = build_fivetran_client(http, Settings(mode="sandbox"))
        quick = build_fivetran_client(
            http, Settings(mode="sandbox", fivetran={"retry_backoff_seconds": 0.02})
        )
        # Equal jitter: the n-th retry waits between half and all of base * 2**n.
        assert 0.25 <= default._backoff(0) <= 0.5
        assert 0.01 <= quick._backoff(0) <= 0.02
        assert 0.04 <= quick._backoff(2) <= 0.08
        await default.aclose()
        await quick.aclose()


async def test_5xx_on_idempotent_calls_backs_off_and_recovers(env: Env) -> None:
    gid = await _group(env)
    await env.fault(method="GET", path_regex=f"^/v1/groups/{gid}$", status=503, count=2)
    assert (await env.client.get_group(gid))["id"] == gid
    assert env.sleeps.calls == [0.375, 0.75]  # equal jitter, rng fixed at 0.5
    cid = (await _salesforce(env, gid))["id"]
    await env.fault(method="PATCH", path_regex=f"^/v1/connections/{cid}$", status=500, count=1)
    await env.client.update_connection(cid, {"paused": False})
    await env.fault(method="POST", path_regex="/sync$", status=502, count=1)
    await env.client.sync_connection(cid)
    await env.fault(
        method="DELETE", path_regex=f"^/v1/connections/{cid}$", status=504, count=1, after=True
    )
    # processed, answer lost, retried → 404: the delete did happen, so it is a success
    assert (await env.client.delete_connection(cid))["code"] == "Success"
    assert [r["status"] for r in env.requests("DELETE", f"/v1/connections/{cid}")] == [504, 404]
    with pytest.raises(FivetranNotFound):  # a plain 404 stays an error
        await env.client.delete_connection(cid)


async def test_5xx_exhausted_raises_server_error(env: Env) -> None:
    await env.fault(method="GET", path_regex="^/v1/groups$", status=500, count=10)
    with pytest.raises(FivetranServerError) as info:
        await env.client.list_groups()
    assert info.value.status == 500
    assert len(env.requests("GET", "/v1/groups")) == 4
    assert len(env.sleeps.calls) == 3


async def test_create_is_never_resent_after_an_ambiguous_5xx(env: Env) -> None:
    gid = await _group(env)
    await env.fault(method="POST", path_regex="^/v1/connections$", status=502, count=1, after=True)
    with pytest.raises(FivetranAmbiguous) as info:
        await _salesforce(env, gid)
    assert info.value.status == 502
    assert len(env.requests("POST", "/v1/connections")) == 1
    assert env.sleeps.calls == []
    found = await env.client.find_connection(gid, "sf_acme")  # how the caller resolves it
    assert found is not None and found["service"] == "salesforce"


async def test_create_is_never_resent_after_a_5xx_before_processing(env: Env) -> None:
    gid = await _group(env)
    await env.fault(method="POST", path_regex="^/v1/connections$", status=500, count=1)
    with pytest.raises(FivetranAmbiguous):
        await _salesforce(env, gid)
    assert len(env.requests("POST", "/v1/connections")) == 1
    assert await env.client.find_connection(gid, "sf_acme") is None


class Counting(httpx.AsyncBaseTransport):
    def __init__(
        self, inner: httpx.AsyncBaseTransport, fail: type[Exception] | None = None, times: int = 0
    ) -> None:
        self.inner, self.fail, self.times = inner, fail, times
        self.sent: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(f"{request.method} {request.url.path}")
        if self.fail is not None and self.times > 0:
            self.times -= 1
            raise self.fail("simulated", request=request)  # type: ignore[call-arg]
        return await self.inner.handle_async_request(request)


async def test_create_timeout_is_ambiguous_and_not_resent(env: Env) -> None:
    gid = await _group(env)
    counting = Counting(env.raw._transport)
    http = httpx.AsyncClient(transport=counting)
    client = _client(env, http, timeout=0.05)
    await env.fault(method="POST", path_regex="^/v1/connections$", delay_seconds=1.0, count=1)
    env.tokens.active.add("rt")
    body = build_create_payload(
        "salesforce",
        group_id=gid,
        schema="sf_t",
        config={},
        auth=auth_block_for("salesforce", client_id="c", client_secret="s", refresh_token="rt"),
    )
    with pytest.raises(FivetranAmbiguous) as info:
        await client.create_connection(body)
    assert "timed out" in info.value.message
    assert counting.sent.count("POST /v1/connections") == 1


async def test_transport_errors(env: Env) -> None:
    # A read error after sending: ambiguous for a create, retried for a GET.
    counting = Counting(env.raw._transport, httpx.ReadError, times=1)
    client = _client(env, httpx.AsyncClient(transport=counting))
    with pytest.raises(FivetranAmbiguous):
        await client.create_group("x1")
    assert counting.sent == ["POST /v1/groups"]
    counting.fail, counting.times = httpx.ReadError, 1
    assert await client.list_groups() == []
    assert counting.sent[-2:] == ["GET /v1/groups", "GET /v1/groups"]
    # A connect error means nothing was sent: even a create is retried.
    counting.fail, counting.times = httpx.ConnectError, 1
    assert (await client.create_group("x2"))["name"] == "x2"
    assert counting.sent[-2:] == ["POST /v1/groups", "POST /v1/groups"]
    # Persistent transport failure → FivetranUnavailable after the retries.
    counting.fail, counting.times = httpx.ReadError, 10
    with pytest.raises(FivetranUnavailable):
        await client.get_group("any")
    counting.fail, counting.times = httpx.ConnectError, 10
    with pytest.raises(FivetranUnavailable):
        await client.create_group("x3")


async def test_budget_exhausted_stops_before_sending(env: Env) -> None:
    sleeps = Sleeps()
    client = _client(env, budget=LocalTokenBucket(2, max_wait=0, sleep=sleeps))
    await client.list_groups()
    await client.list_groups()
    with pytest.raises(FivetranBudgetExhausted) as info:
        await client.list_groups()
    assert info.value.retry_after and info.value.retry_after > 0
    assert len(env.requests("GET", "/v1/groups")) == 2


async def test_every_call_is_labelled_for_metrics(env: Env) -> None:
    await env.client.list_groups()
    await env.client.account_info()
    value = env.metrics.registry.get_sample_value(
        "pbf_outbound_requests_total", {"target": "fivetran", "status": "200"}
    )
    assert value == 2


async def test_429_without_retry_after_backs_off(env: Env) -> None:
    await env.fault(method="GET", path_regex="^/v1/groups$", status=429, count=1)
    assert await env.client.list_groups() == []
    assert env.sleeps.calls == [0.375]


def test_errors_map_to_problem_details() -> None:
    from app.errors import (
        Conflict,
        InvalidInput,
        ServiceUnavailable,
        TooManyRequests,
        UpstreamError,
    )
    from app.fivetran.errors import FivetranForbidden, FivetranInvalidInput, fivetran_problem

    # One mapping: 409 stays a conflict, 400/422 are the caller's input (422), never a 502.
    conflict = fivetran_problem(FivetranConflict(409, "Conflict", "dup"))
    assert isinstance(conflict, Conflict) and conflict.code == "fivetran_conflict"
    rejected = fivetran_problem(FivetranInvalidInput(400, "InvalidInput", "bad"))
    assert isinstance(rejected, InvalidInput) and rejected.status == 422
    assert rejected.code == "fivetran_rejected"
    forbidden = fivetran_problem(FivetranForbidden(403, "Forbidden", "no"))
    assert isinstance(forbidden, UpstreamError) and forbidden.status == 502
    assert isinstance(fivetran_problem(OSError("down")), ServiceUnavailable)
    limited = FivetranTooManyRequests(429, "TooManyRequests", "slow", None, retry_after=60)
    problem = limited.as_app_error()
    assert isinstance(problem, TooManyRequests) and problem.headers["Retry-After"] == "60"
    assert isinstance(FivetranAmbiguous(0, "Ambiguous", "?").as_app_error(), ServiceUnavailable)
    assert isinstance(FivetranUnavailable(0, "Unavailable", "?").as_app_error(), ServiceUnavailable)
