"""The layering of app/ (pyproject ``[tool.importlinter]``) holds, and the check would catch a
reverse import: it is run on the real tree and on a copy with one reverse import added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.db_independent  # never uses the database under test

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_layers_are_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_reverse_import_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    # end_users is below connect: importing the connect service from it points the wrong way.
    (tmp_path / "app" / "end_users" / "reverse.py").write_text(
        "from app.connect.service import create_connect_session\n"
    )
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "app.end_users is not allowed to import app.connect" in result.stdout
    assert "app.end_users.reverse -> app.connect.service" in result.stdout
