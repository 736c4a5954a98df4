"""Vault fixtures: explicit keyrings, apps built on them, and raw-row helpers for attacks."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.config import Settings

TEST_DB = os.environ.get("PBF_TEST_DB", "sqlite")

#: Plaintext test tokens: distinctive, so a grep over any dump or log finds them.
PLAINTEXTS = {
    "refresh_token": "rt-PLAINTEXT-4f1c9e7b2a",
    "access_token": "at-PLAINTEXT-93d0c2a6e1",
    "code_verifier": "cv-PLAINTEXT-0b8e5d7f3c",
    "client_secret": "cs-PLAINTEXT-7a2f6c1e9d",
}


def make_key(fill: int) -> str:
    return base64.b64encode(bytes([fill]) * 32).decode()


def keyring_json(active: str, *kids: str) -> str:
    """A keyring document whose key material is derived from the key id (test only)."""
    kids = kids or (active,)
    return json.dumps(
        {"active": active, "keys": {k: make_key(sum(k.encode()) % 256) for k in kids}}
    )


@pytest.fixture
def keyring_settings(settings_factory: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings whose local keyring is ``active`` plus ``kids`` (given as PBF_ENCRYPTION_KEYS)."""

    def make(active: str, *kids: str, **overrides: Any) -> Settings:
        return settings_factory(encryption_keys=keyring_json(active, *kids), **overrides)

    return make


@pytest.fixture
def running_app() -> Callable[[Settings], Any]:
    """``async with running_app(settings) as app:`` — the real app with its lifespan."""
    from app.main import create_app

    @asynccontextmanager
    async def run(settings: Settings) -> AsyncIterator[FastAPI]:
        application = create_app(settings)
        async with application.router.lifespan_context(application):
            yield application

    return run


async def put(app: FastAPI, value: str, **owner: str) -> None:
    async with app.state.sessionmaker() as session, session.begin():
        await app.state.vault.put(session, value=value, **owner)


async def get(app: FastAPI, **owner: str) -> Any:
    async with app.state.sessionmaker() as session:
        return await app.state.vault.get(session, **owner)


async def rows(app: FastAPI) -> list[dict[str, Any]]:
    async with app.state.sessionmaker() as session:
        result = await session.execute(text("SELECT * FROM vault_secrets ORDER BY owner_id, field"))
        return [dict(r._mapping) for r in result]


async def row_of(app: FastAPI, owner_type: str, owner_id: str, field: str) -> dict[str, Any]:
    async with app.state.sessionmaker() as session:
        result = await session.execute(
            text("SELECT * FROM vault_secrets WHERE owner_type=:t AND owner_id=:o AND field=:f"),
            {"t": owner_type, "o": owner_id, "f": field},
        )
        return dict(result.one()._mapping)


async def set_columns(app: FastAPI, secret_id: str, **values: Any) -> None:
    """Raw UPDATE of one row (the attacker with database write access)."""
    sets = ", ".join(f"{k} = :{k}" for k in values)
    async with app.state.sessionmaker() as session, session.begin():
        result = await session.execute(
            text(f"UPDATE vault_secrets SET {sets} WHERE id = :id"),
            {"id": secret_id, **values},
        )
        assert result.rowcount == 1


def owner(end_user_id: str, owner_type: str, owner_id: str, field: str) -> dict[str, str]:
    return {
        "end_user_id": end_user_id,
        "owner_type": owner_type,
        "owner_id": owner_id,
        "field": field,
    }
