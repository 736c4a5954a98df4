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


#: (module to add or append to, a reverse import, the violation reported) — one per layer
#: placement worth proving, all added to one copy of the tree and checked in one run.
REVERSE_IMPORTS = [
    # end_users is below connect: importing the connect service from it points the wrong way.
    (
        "end_users/reverse.py",
        "from app.connect.service import create_connect_session",
        "app.end_users is not allowed to import app.connect",
    ),
    # audit records are below the domains that record writes.
    (
        "audit/reverse.py",
        "from app.connections import service",
        "app.audit is not allowed to import app.connections",
    ),
    # input_guard and api_docs are libraries under app.kit (a line appended to the module).
    ("input_guard.py", "from app.kit import pagination", "app.input_guard is not allowed"),
    ("api_docs.py", "from app.kit import idempotency", "app.api_docs is not allowed"),
    # serve sits beside main: neither imports the other.
    ("serve.py", "from app import main", "app.serve is not allowed to import app.main"),
    # the sandbox demo (inside app.sandbox) is above callers.
    (
        "callers/reverse.py",
        "from app.sandbox.demo import keys",
        "app.callers is not allowed to import app.sandbox",
    ),
]


def test_a_reverse_import_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for path, line, _ in REVERSE_IMPORTS:
        with (tmp_path / "app" / path).open("a", encoding="utf-8") as module:
            module.write("\n" + line + "  # noqa\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    for _, _, violation in REVERSE_IMPORTS:
        assert violation in result.stdout, violation
    assert "app.end_users.reverse -> app.connect.service" in result.stdout
