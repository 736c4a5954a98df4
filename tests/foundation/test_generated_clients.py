"""The committed API document generates working, type-checked clients.

* TypeScript: ``openapi-typescript`` (exact versions in ``openapi/client-check/package.json``)
  turns ``openapi/openapi.json`` into ``schema.d.ts``; ``tsc --noEmit`` checks
  ``openapi/client-check/usage.ts`` against it, and a wrong usage must fail. The npm packages
  install into ``.venv/client-check`` (outside git, no lock file). Skipped with one line when
  node/npm are missing; CI has them (``make test`` runs this).
* Python: ``openapi-python-client`` generates a package; mypy checks it and a strictly typed
  usage, and the generated client then talks to the real app over ASGI.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "openapi" / "openapi.json"
CHECK = ROOT / "openapi" / "client-check"
BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _node_workdir() -> Path:
    """``.venv/client-check`` with the pinned packages installed (reinstalled when
    package.json changes)."""
    work = ROOT / ".venv" / "client-check"
    work.mkdir(parents=True, exist_ok=True)
    wanted = hashlib.sha256((CHECK / "package.json").read_bytes()).hexdigest()
    stamp = work / ".installed"
    if not stamp.exists() or stamp.read_text() != wanted:
        shutil.copy(CHECK / "package.json", work / "package.json")
        r = _run(["npm", "install", "--no-package-lock", "--no-audit", "--no-fund"], work, 600)
        assert r.returncode == 0, r.stdout + r.stderr
        stamp.write_text(wanted)
    for name in ("tsconfig.json", "usage.ts"):
        shutil.copy(CHECK / name, work / name)
    return work


@pytest.mark.db_independent
def test_typescript_types_generate_and_type_check() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: TypeScript client check skipped (CI runs it)")
    work = _node_workdir()
    bins = work / "node_modules" / ".bin"
    r = _run([str(bins / "openapi-typescript"), str(DOC), "-o", "schema.d.ts"], work)
    assert r.returncode == 0, r.stdout + r.stderr
    schema = (work / "schema.d.ts").read_text()
    assert '"/v1/connections": {' in schema
    # The check is real: a state that does not exist and a missing field are type errors.
    # One compiler run (about 2.5 s each) checks both files with the project's strict
    # options: usage.ts must come out clean, bad.ts must not.
    (work / "bad.ts").write_text(
        textwrap.dedent(
            """
            import type { components } from "./schema";
            type C = components["schemas"]["ConnectionOut"];
            export const s: C["state"] = "almost_connected";
            export const c: components["schemas"]["ConnectionCreate"] = { service: "x" };
            """
        )
    )
    config = json.loads((work / "tsconfig.json").read_text())
    config["files"] = [*config["files"], "bad.ts"]
    (work / "tsconfig.check.json").write_text(json.dumps(config))
    r = _run([str(bins / "tsc"), "-p", "tsconfig.check.json"], work)
    errors = [line for line in r.stdout.splitlines() if "error TS" in line]
    assert r.returncode != 0 and errors, r.stdout + r.stderr
    assert all(line.startswith("bad.ts") for line in errors), r.stdout
    assert "almost_connected" in r.stdout and "end_user" in r.stdout, r.stdout


USAGE_PY = '''
"""Strictly typed use of the generated client."""
from pbf_client import AuthenticatedClient
from pbf_client.api.connections import create_connection, list_connections
from pbf_client.api.sources import get_one_source
from pbf_client.models import (
    ConnectionCreate,
    ConnectionCreateConfig,
    ConnectionCreateCredentialsType0,
    ConnectionOut,
    ConnectionOutState,
    ListConnectionsStateType0,
    Problem,
    SourceOut,
)


def postgres(client: AuthenticatedClient, end_user: str) -> ConnectionOutState | list[str]:
    source = get_one_source.sync(service="postgres", client=client)
    assert isinstance(source, SourceOut)
    body = ConnectionCreate(
        end_user=end_user,
        service="postgres",
        config=ConnectionCreateConfig.from_dict({"host": "db.example.com", "port": 5432}),
        credentials=ConnectionCreateCredentialsType0.from_dict({"password": "pw"}),
    )
    out = create_connection.sync(client=client, body=body)
    if isinstance(out, Problem):
        return [str(e.field) for e in (out.errors or [])]
    assert isinstance(out, ConnectionOut)
    return out.state


def broken(client: AuthenticatedClient) -> int:
    page = list_connections.sync(client=client, state=ListConnectionsStateType0.BROKEN)
    return 0 if page is None or isinstance(page, Problem) else len(page.items)
'''

MYPY_INI = """
[mypy]
strict = True
cache_dir = /dev/null
# The generator's own client.py template forwards *args to httpx's __exit__, which
# httpx's current annotations reject; everything generated from our document is checked.
[mypy-pbf_client.client]
disable_error_code = arg-type
"""


@pytest.fixture(scope="module")
def python_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pyclient")
    r = _run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(DOC),
            "--output-path",
            str(out / "pbf_client"),
            "--meta",
            "none",
        ],
        out,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Warning" not in r.stdout + r.stderr, r.stdout + r.stderr
    return out


@pytest.mark.db_independent
def test_python_client_generates_and_type_checks(python_client: Path) -> None:
    (python_client / "usage.py").write_text(USAGE_PY)
    (python_client / "mypy.ini").write_text(MYPY_INI)
    r = _run(
        [str(BIN / "python"), "-m", "mypy", "--config-file", "mypy.ini", "pbf_client", "usage.py"],
        python_client,
    )
    assert r.returncode == 0, r.stdout + r.stderr


async def test_python_client_talks_to_the_app(
    python_client: Path, app: FastAPI, auth_headers: dict[str, str]
) -> None:
    """The generated models parse the real answers (success and problem+json)."""
    sys.path.insert(0, str(python_client))
    try:
        from pbf_client import AuthenticatedClient  # type: ignore[import-not-found]
        from pbf_client.api.connections import (  # type: ignore[import-not-found]
            create_connection,
            list_connections,
        )
        from pbf_client.api.end_users import put_end_user  # type: ignore[import-not-found]
        from pbf_client.models import (  # type: ignore[import-not-found]
            ConnectionCreate,
            ConnectionOut,
            EndUserPut,
            ListConnectionsStateType0,
            Problem,
        )
    finally:
        sys.path.remove(str(python_client))
    token = auth_headers["Authorization"].split(" ", 1)[1]
    client = AuthenticatedClient(base_url="http://127.0.0.1:8000", token=token)
    client.set_async_httpx_client(
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://127.0.0.1:8000",
            headers={"Authorization": f"Bearer {token}"},
        )
    )
    r = await put_end_user.asyncio_detailed(
        external_id="acme", client=client, body=EndUserPut(name="Acme")
    )
    assert r.status_code == 201, r.content
    bad = await create_connection.asyncio(
        client=client, body=ConnectionCreate(end_user="acme", service="postgres")
    )
    assert isinstance(bad, Problem), bad
    assert bad.errors and {e.field for e in bad.errors} >= {"config.host", "config.user"}
    made = await create_connection.asyncio(
        client=client,
        body=ConnectionCreate.from_dict(
            {
                "end_user": "acme",
                "service": "stripe",
                "credentials": {"api_key": "sk_test_client"},
            }
        ),
    )
    assert isinstance(made, ConnectionOut), made
    page = await list_connections.asyncio(
        client=client, state=ListConnectionsStateType0(made.state.value)
    )
    assert [c.id for c in page.items] == [made.id]
    none = await list_connections.asyncio(client=client, state=ListConnectionsStateType0.BROKEN)
    assert none.items == []


@pytest.mark.db_independent
def test_document_enums_match_the_code() -> None:
    from typing import get_args

    from app.connections import states
    from app.connections.schemas import ConnectionState
    from app.events.kinds import EVENT_KINDS

    doc = json.loads(DOC.read_text())
    schemas = doc["components"]["schemas"]
    assert schemas["ConnectionOut"]["properties"]["state"]["enum"] == list(states.STATES)
    assert set(get_args(ConnectionState)) == set(states.STATES)
    assert schemas["EventOut"]["properties"]["type"]["enum"] == list(EVENT_KINDS)
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            for code, response in op["responses"].items():
                content = response.get("content", {})
                if int(code) >= 400:
                    assert list(content) == ["application/problem+json"], where
                    assert content["application/problem+json"]["schema"] == {
                        "$ref": "#/components/schemas/Problem"
                    }, where
                for media in content.values():
                    assert "example" in media, (where, code)
            for media in op.get("requestBody", {}).get("content", {}).values():
                assert "example" in media, where
            if op["security"]:
                assert {"401", "403"} <= set(op["responses"]), where
    assert "HTTPValidationError" not in schemas
