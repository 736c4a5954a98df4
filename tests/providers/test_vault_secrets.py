"""OAuth app client secrets kept in the vault (owner ``oauth_app``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings
from app.providers import ProviderNotConfigured


async def test_client_secret_from_the_vault(
    settings_factory: Callable[..., Settings],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.main import create_app

    apps = {"hubspot": {"client_id": "hub-real", "client_secret_in_vault": True}}
    settings = settings_factory(oauth={"apps": apps})
    # The CLI stores the secret, reading the same configuration from the environment.
    monkeypatch.setenv("PBF_DATABASE_URL", database_url)
    monkeypatch.setenv("PBF_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PBF_OAUTH__APPS__HUBSPOT__CLIENT_ID", "hub-real")
    monkeypatch.setenv("PBF_OAUTH__APPS__HUBSPOT__CLIENT_SECRET_IN_VAULT", "true")

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        registry = app.state.providers
        assert registry.is_configured("hubspot") and not registry.get("hubspot").sandboxed
        async with app.state.sessionmaker() as session:
            with pytest.raises(ProviderNotConfigured):
                await registry.credentials(session, "hubspot")

        # The CLI runs its own event loop: call it from a worker thread.
        result = await asyncio.to_thread(
            CliRunner().invoke,
            cli,
            ["providers", "set-secret", "hubspot", "--stdin"],
            input="v+ault%secret:1\n",
        )
        assert result.exit_code == 0, result.output
        assert "v+ault" not in result.output

        async with app.state.sessionmaker() as session:
            client_id, secret, _ = await registry.credentials(session, "hubspot")
        assert client_id == "hub-real"
        assert secret.reveal() == "v+ault%secret:1"

        deleted = await asyncio.to_thread(
            CliRunner().invoke, cli, ["providers", "delete-secret", "hubspot"]
        )
        assert deleted.exit_code == 0 and "deleted 1" in deleted.output
        async with app.state.sessionmaker() as session:
            with pytest.raises(ProviderNotConfigured):
                await registry.credentials(session, "hubspot")


@pytest.mark.db_independent
def test_vault_secret_and_inline_secret_conflict() -> None:
    from app.providers import ProviderConfigError
    from app.providers.startup import build_registry

    apps: dict[str, Any] = {
        "hubspot": {"client_id": "x", "client_secret": "y", "client_secret_in_vault": True}
    }
    with pytest.raises(ProviderConfigError, match="set only one of"):
        build_registry(Settings(mode="production", oauth={"apps": apps}))


@pytest.mark.db_independent
def test_set_secret_needs_a_vault_configured_app(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(cli, ["providers", "set-secret", "zoom", "--stdin"], input="x\n")
    assert result.exit_code == 2
    assert "CLIENT_SECRET_IN_VAULT" in result.output
