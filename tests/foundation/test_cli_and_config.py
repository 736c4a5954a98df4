"""CLI contract (api-keys, migrate, serve refusals) and production-mode settings checks.

The commands run in-process (:func:`tests.fixtures.cli.run_cli`); one test runs the real
console script, for what only a process proves: the entry point works and its exit code and
stderr cross the process boundary.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import Settings, production_problems
from app.main import ConfigurationError, create_app
from tests.fixtures.cli import CliResult, run_cli

pytestmark = pytest.mark.db_independent  # never uses the database under test

EXE = str(Path(sys.executable).parent / "pbf-headless")


def _run(args: list[str], cwd: Path, **env: str) -> CliResult:
    """``pbf-headless *args`` in ``cwd`` (in-process), the test's clean environment plus
    ``env``."""
    return run_cli(args, cwd=cwd, env=env)


def _run_process(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The real console script in a subprocess (the developer's PBF_* removed)."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PBF_", "DATABASE_URL", "REDIS_URL"))
    }
    base.update(env)
    return subprocess.run(
        [EXE, *args], cwd=cwd, env=base, capture_output=True, text=True, timeout=120
    )


def test_api_keys_lifecycle_via_cli(tmp_path):
    assert _run(["migrate"], tmp_path).returncode == 0
    assert (tmp_path / "var" / "pbf.db").exists()  # working data under ./var/ by default
    r = _run(
        [
            "api-keys",
            "create",
            "--name",
            "web",
            "--scope",
            "read",
            "--scope",
            "write",
            "--end-user-prefix",
            "acme-",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip().splitlines()[-1]
    assert key.startswith("pbf_") and " " not in key
    listed = _run(["api-keys", "list", "--json"], tmp_path)
    assert '"name": "web"' in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout  # never shows the secret
    key_id = key.split("_")[1]
    assert _run(["api-keys", "revoke", key_id], tmp_path).returncode == 0
    assert '"revoked": true' in _run(["api-keys", "list", "--json"], tmp_path).stdout


def test_bad_scope_and_unknown_key_are_clear_errors(tmp_path):
    _run(["migrate"], tmp_path)
    r = _run(["api-keys", "create", "--name", "x", "--scope", "root"], tmp_path)
    assert r.returncode == 2 and "Unknown scope" in r.stderr
    r = _run(["api-keys", "revoke", "nope"], tmp_path)
    assert r.returncode == 2 and "not found" in r.stderr


def test_cli_refuses_unmigrated_database(tmp_path):
    r = _run(["api-keys", "list"], tmp_path)
    assert r.returncode == 2
    assert "pbf-headless migrate" in r.stderr


def test_production_serve_refuses_with_one_message_per_item(tmp_path):
    """The one real process of this file: the console script runs, and the refusal's exit code
    and its lines on stderr come out of the process."""
    r = _run_process(["serve"], tmp_path, PBF_MODE="production")
    assert r.returncode == 2
    for needle in (
        "DATABASE_URL",
        "PBF_FIVETRAN__API_KEY",
        "WEBHOOK_SECRET",
        "encryption keys",
        "PBF_PUBLIC_BASE_URL",
    ):
        assert needle in r.stderr, needle


def test_production_serve_refuses_unmigrated_database(tmp_path):
    r = _run(
        ["serve"],
        tmp_path,
        PBF_MODE="production",
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/x.db",
    )
    assert r.returncode == 2


def test_production_settings_validation():
    bad = Settings(mode="production")
    problems = production_problems(bad)
    assert len(problems) >= 4
    with pytest.raises(ConfigurationError) as exc:
        create_app(bad)
    assert exc.value.problems == problems
    assert production_problems(Settings(mode="sandbox")) == []


def test_env_nested_settings(monkeypatch):
    monkeypatch.setenv("PBF_FIVETRAN__TIMEOUT_SECONDS", "12.5")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    s = Settings()
    assert s.fivetran.timeout_seconds == 12.5
    assert s.effective_database_url == "postgresql+asyncpg://u@h/db"
    assert s.fivetran_base_url.endswith("/sandbox/fivetran")
    assert "hunter2" not in repr(Settings(fivetran={"api_secret": "hunter2"}).fivetran)
