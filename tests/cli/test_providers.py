"""``pbf-headless providers check|list``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from app.cli import cli

pytestmark = pytest.mark.db_independent  # never uses the database under test


def test_providers_check_ok_and_list_json() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["providers", "check", "--sandbox"])
    assert result.exit_code == 0, result.output
    assert "128 providers" in result.output
    listed = runner.invoke(cli, ["providers", "list", "--sandbox", "--json"])
    rows = {row["key"]: row for row in json.loads(listed.output)}
    assert rows["shopify"]["inputs"] == ["shop"]
    assert rows["zoom"]["token_auth_method"] == "client_secret_basic"
    assert rows["zoom"]["sandboxed"] is True


def test_providers_check_reports_every_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PBF_MODE", "production")
    monkeypatch.setenv(
        "PBF_OAUTH__PROVIDERS",
        json.dumps(
            {
                "acme": {
                    "display_name": "Acme",
                    "fivetran_service": "hubspot",
                    "issuer": "https://a.example",
                    "authorization_url": "https://a.example/authorize",
                    "token_url": "http://a.example/token",
                    "grant_types": ["authorization_code", "password"],
                }
            }
        ),
    )
    result = CliRunner().invoke(cli, ["providers", "check"])
    assert result.exit_code == 1
    assert "token_url" in result.output and "password grant" in result.output
