"""The committed openapi/openapi.json is exactly what the app produces."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.openapi_doc import render_openapi

pytestmark = pytest.mark.db_independent  # never uses the database under test

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_committed_openapi_matches_app():
    assert COMMITTED.exists(), "run 'make openapi'"
    assert COMMITTED.read_text() == render_openapi(), (
        "openapi/openapi.json is stale: run 'make openapi' and commit it"
    )
