"""Onboarding settings: production refuses what only works in the sandbox."""

from __future__ import annotations

import pytest

from app.config import Settings, production_problems

pytestmark = pytest.mark.db_independent  # never uses the database under test


def test_production_needs_a_real_destination_template_or_shared_group() -> None:
    problems = production_problems(Settings(mode="production"))
    assert any("DESTINATION_TEMPLATE" in p for p in problems)
    configured = Settings(
        mode="production",
        onboarding={
            "destination_template": {
                "service": "snowflake",
                "region": "AWS_US_EAST_1",
                "time_zone_offset": "0",
                "config": {"host": "acct.snowflakecomputing.com"},
            }
        },
    )
    assert not any("ONBOARDING" in p for p in production_problems(configured))
    shared = Settings(mode="production", onboarding={"group_strategy": "shared"})
    assert any("SHARED_GROUP_ID" in p for p in production_problems(shared))
    assert production_problems(Settings(mode="sandbox")) == []
