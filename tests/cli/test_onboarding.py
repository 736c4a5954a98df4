"""``pbf-headless onboarding resume`` runs against the configured database."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner


def test_resume_command(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli import cli

    monkeypatch.setenv("PBF_DATABASE_URL", database_url)
    monkeypatch.setenv("PBF_DATA_DIR", str(tmp_path / "var"))
    result = CliRunner().invoke(cli, ["onboarding", "resume", "--sandbox"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == (
        "connections finished: 0; offboardings finished: 0"
    )
