"""``pbf-headless onboarding resume`` runs against the configured database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.cli import run_cli


def test_resume_command(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PBF_DATABASE_URL", database_url)
    monkeypatch.setenv("PBF_DATA_DIR", str(tmp_path / "var"))
    result = run_cli(["onboarding", "resume", "--sandbox"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "connections finished: 0; offboardings finished: 0"
    )
