"""The order of the included routers is free: no request could be answered by two routes.

``app.main`` includes the busiest routers first (every request walks them in order until one
matches). That is only safe while no two routes of different routers accept one request: a
path template of one must not match a concrete path of another with a method in common.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from starlette.routing import compile_path

from app.config import Settings
from app.main import create_app
from app.openapi_contract import leaf_routes

pytestmark = pytest.mark.db_independent

Leaf = tuple[str, frozenset[str], re.Pattern[str], int]


def _leaves(app: FastAPI) -> list[Leaf]:
    """(path, methods, regex, index of the top-level entry it belongs to) of every route."""
    return [
        (path, frozenset(getattr(route, "methods", None) or {"*"}), compile_path(path)[0], top)
        for top, route in leaf_routes(app)
        if isinstance(path := getattr(route, "path", None), str) and path
    ]


def _clashes(app: FastAPI) -> list[tuple[str, list[str], str, list[str]]]:
    """Routes of different top-level entries that accept one request."""
    leaves = _leaves(app)
    return [
        (p1, sorted(m1), p2, sorted(m2))
        for p1, m1, _, t1 in leaves
        for p2, m2, rx2, t2 in leaves
        if t1 != t2
        and rx2.match(re.sub(r"\{[^}]+\}", "sample-1", p1))
        and (m1 & m2 or "*" in m1 | m2)
    ]


def test_no_request_matches_routes_of_two_routers(tmp_path: Path) -> None:
    app = create_app(
        Settings(
            mode="sandbox",
            data_dir=tmp_path,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}",
            public_base_url="http://127.0.0.1:8000",
        )
    )
    assert len(_leaves(app)) > 40
    assert _clashes(app) == []


def test_the_check_sees_a_clash() -> None:
    """The check above finds an overlap when there is one (so its empty answer means it)."""
    app = FastAPI()
    app.get("/v1/connections/{connection_id}")(lambda connection_id: None)
    other = APIRouter()
    other.get("/v1/connections/preview")(lambda: None)
    app.include_router(other)
    assert _clashes(app) == [
        ("/v1/connections/preview", ["GET"], "/v1/connections/{connection_id}", ["GET"])
    ]
