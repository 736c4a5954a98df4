"""The schema policy as pure functions: creation patch and filtering of caller requests."""

from __future__ import annotations

import pytest

from app.config import SchemaPolicy
from app.connections import schema_policy

pytestmark = pytest.mark.db_independent  # never uses the database under test

CURRENT = {
    "schema_change_handling": "ALLOW_ALL",
    "schemas": {
        "crm": {
            "enabled": True,
            "tables": {
                "users": {
                    "enabled": True,
                    "columns": {"email": {"enabled": True, "hashed": False}},
                },
                "audit_log": {"enabled": True, "columns": {}},
                "orders": {"enabled": False, "columns": {}},
            },
        }
    },
}
POLICY = SchemaPolicy(
    schema_change_handling="ALLOW_COLUMNS",
    blocked_tables=["*.audit_*"],
    hashed_columns=["crm.users.email", "crm.users.phone", "*.orders.card_*"],
)


def test_creation_patch_blocks_hashes_and_caps_handling() -> None:
    body = schema_policy.creation_patch(POLICY, CURRENT)
    assert body["schema_change_handling"] == "ALLOW_COLUMNS"
    tables = body["schemas"]["crm"]["tables"]
    assert tables["audit_log"]["enabled"] is False
    assert tables["users"]["columns"]["email"] == {"enabled": True, "hashed": True}
    # Exact patterns name columns Fivetran has not listed yet; globs cannot.
    assert tables["users"]["columns"]["phone"] == {"enabled": True, "hashed": True}
    assert "orders" not in tables
    assert body["schemas"]["crm"]["enabled"] is True


def test_filter_keeps_permitted_and_reports_refused() -> None:
    out = schema_policy.filter_request(
        POLICY,
        {
            "schema_change_handling": "ALLOW_ALL",
            "schemas": {
                "crm": {
                    "tables": {
                        "audit_log": {"enabled": True},
                        "orders": {"enabled": True, "columns": {"card_no": {"hashed": False}}},
                        "users": {"columns": {"email": {"enabled": False}}},
                    }
                }
            },
        },
        CURRENT,
    )
    assert {r["path"] for r in out.refused} == {
        "schema_change_handling",
        "crm.audit_log",
        "crm.orders.card_no",
    }
    assert "schema_change_handling" not in out.body
    tables = out.body["schemas"]["crm"]["tables"]
    assert "audit_log" not in tables
    assert tables["orders"]["enabled"] is True
    assert "columns" not in tables["orders"]  # the only change asked for was refused
    # Fivetran needs "enabled" at every level: taken from the current config.
    assert tables["users"]["enabled"] is True
    assert tables["users"]["columns"]["email"] == {"enabled": False}
    assert out.body["schemas"]["crm"]["enabled"] is True


def test_less_permissive_handling_is_always_allowed() -> None:
    out = schema_policy.filter_request(POLICY, {"schema_change_handling": "BLOCK_ALL"}, CURRENT)
    assert out.body == {"schema_change_handling": "BLOCK_ALL"} and out.refused == []
