"""The persisted sandbox state over ASGI: kept across app restarts, one owner at a time,
running syncs re-armed, an unreadable file set aside, reset persisted."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.sandbox.persistence import SandboxStateLocked
from tests.sandbox.conftest import CONTROL, SIM_AUTH, eventually

SIM = "/sandbox/fivetran"


def _sim_headers() -> dict[str, str]:
    return {"Authorization": "", "Accept": "application/json"}


async def _run(settings: Settings, fn: Callable[[httpx.AsyncClient], Any]) -> Any:
    """One app lifetime: start, let ``fn`` talk to it, shut down (saving)."""
    from app.main import create_app

    app = create_app(settings)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=settings.public_base_url
            )
        )
        return await fn(client)


async def _new_group(client: httpx.AsyncClient, name: str) -> str:
    r = await client.post(
        f"{SIM}/v1/groups", json={"name": name}, auth=SIM_AUTH, headers=_sim_headers()
    )
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


async def _group_status(client: httpx.AsyncClient, group_id: str) -> int:
    r = await client.get(f"{SIM}/v1/groups/{group_id}", auth=SIM_AUTH, headers=_sim_headers())
    return r.status_code


@pytest.fixture
def persisted(settings_factory: Callable[..., Settings], tmp_path: Path) -> Callable[..., Settings]:
    def make(**sandbox: Any) -> Settings:
        return settings_factory(
            sandbox={"persist": True, "state_file": tmp_path / "state.json", **sandbox}
        )

    return make


async def test_state_is_kept_across_restarts_and_reset_is_kept_too(
    persisted: Callable[..., Settings], tmp_path: Path
) -> None:
    group_id = await _run(persisted(), lambda c: _new_group(c, "kept"))
    assert await _run(persisted(), lambda c: _group_status(c, group_id)) == 200

    async def reset(client: httpx.AsyncClient) -> None:
        assert (await client.post(f"{CONTROL}/reset")).status_code == 200

    await _run(persisted(), reset)
    assert await _run(persisted(), lambda c: _group_status(c, group_id)) == 404
    # Without persistence nothing is read or written.
    group_id = await _run(persisted(persist=False), lambda c: _new_group(c, "fleeting"))
    assert group_id not in (tmp_path / "state.json").read_text()


async def test_one_owner_at_a_time(persisted: Callable[..., Settings]) -> None:
    from app.main import create_app

    async def second_owner(client: httpx.AsyncClient) -> None:
        other = create_app(persisted())
        with pytest.raises(SandboxStateLocked, match="another sandbox server"):
            async with other.router.lifespan_context(other):
                pass

    await _run(persisted(), second_owner)
    await _run(persisted(), lambda c: _new_group(c, "after"))  # the lock was released


async def test_a_running_sync_finishes_after_a_restart(persisted: Callable[..., Settings]) -> None:
    async def start_sync(client: httpx.AsyncClient) -> str:
        gid = await _new_group(client, "syncs")
        body = {
            "group_id": gid,
            "service": "stripe",
            "config": {"schema": "stripe"},
            "paused": True,
        }
        r = await client.post(
            f"{SIM}/v1/connections",
            json={**body, "config": {"schema": "stripe", "api_key": "sk"}},
            auth=SIM_AUTH,
            headers=_sim_headers(),
        )
        assert r.status_code == 201, r.text
        cid = str(r.json()["data"]["id"])
        r = await client.post(
            f"{SIM}/v1/connections/{cid}/sync", auth=SIM_AUTH, headers=_sim_headers()
        )
        assert r.status_code == 200, r.text
        return cid

    cid = await _run(persisted(sync_seconds=0), start_sync)

    async def finishes(client: httpx.AsyncClient) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            state = (await client.get(f"{CONTROL}/state")).json()["data"]
            return None if cid in state["syncing"] else state

        return await eventually(done, what="the re-armed sync finished")  # type: ignore[no-any-return]

    state = await _run(persisted(sync_seconds=0.1), finishes)
    assert state["connections"] == 1 and state["state_file"]

    async def succeeded(client: httpx.AsyncClient) -> Any:
        r = await client.get(f"{SIM}/v1/connections/{cid}", auth=SIM_AUTH, headers=_sim_headers())
        return r.json()["data"]

    data = await _run(persisted(), succeeded)
    assert data["succeeded_at"] and data["status"]["sync_state"] == "paused"


async def test_an_unreadable_state_file_is_set_aside(
    persisted: Callable[..., Settings], tmp_path: Path
) -> None:
    (tmp_path / "state.json").write_text('{"version": 1, "fivetran": {"groups": [1, 2]}}')
    group_id = await _run(persisted(), lambda c: _new_group(c, "fresh"))
    aside, saved = _files(tmp_path)
    assert len(aside) == 1 and "[1, 2]" in aside[0]
    assert list(saved["fivetran"]["groups"]) == [group_id]


def _files(folder: Path) -> tuple[list[str], dict[str, Any]]:
    """The set-aside files' texts and the current state file."""
    aside = [p.read_text() for p in folder.glob("state.json.unreadable-*")]
    return aside, json.loads((folder / "state.json").read_text())
