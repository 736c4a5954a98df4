"""Problem-details shape for every error class; health, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


class Body(BaseModel):
    n: int


def _assert_problem(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert PROBLEM_KEYS <= body.keys()
    assert body["status"] == status
    assert body["code"] == code
    return body


async def test_unknown_route_is_problem_404(client):
    _assert_problem(await client.get("/v1/does-not-exist"), 404, "not_found")


async def test_wrong_method_is_problem_405(client):
    _assert_problem(await client.delete("/healthz"), 405, "method_not_allowed")


async def test_validation_error_and_500_are_problems(settings, app_factory):
    import httpx

    app = app_factory(settings)
    router = APIRouter()

    @router.post("/x")
    async def x(body: Body) -> dict:
        return {"n": body.n}

    @router.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("secret internals: refresh_token=abc")

    app.include_router(router)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as c,
    ):
        body = _assert_problem(
            await c.post("/x", json={"n": "not-a-number"}), 422, "validation_error"
        )
        assert body["errors"][0]["field"] == "body.n"
        assert "not-a-number" not in str(body)
        r = await c.get("/boom")
        body = _assert_problem(r, 500, "internal_error")
        assert "internals" not in r.text and "abc" not in r.text
        assert r.headers.get("x-request-id")


async def test_healthz_readyz_metrics(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["migrations"]["ok"] is True
    await client.get("/v1/me")
    text = (await client.get("/metrics")).text
    assert 'pbf_http_requests_total{method="GET",route="/v1/me",status="401"}' in text
    assert "pbf_http_request_duration_seconds_bucket" in text
    assert "pbf_db_pool_connections" in text


async def test_readyz_reports_unmigrated_database(settings_factory, app_factory, tmp_path):
    import httpx

    settings = settings_factory(database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    app = app_factory(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        r = await c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["migrations"]["ok"] is False
    assert "pbf-headless migrate" in r.json()["checks"]["migrations"]["reason"]


async def test_request_id_is_accepted_and_returned(client):
    r = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces"


async def test_oversize_body_is_413(client, auth_headers):
    r = await client.post("/v1/me", content=b"x" * 2_000_000, headers=auth_headers)
    _assert_problem(r, 413, "payload_too_large")
