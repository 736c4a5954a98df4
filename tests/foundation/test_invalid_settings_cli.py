"""Invalid settings stop ``serve`` with one line per setting (exit 2), not a traceback.

In-process (:func:`tests.fixtures.cli.run_cli`): an unexpected exception is raised to the test
instead of printed, and a ``serve`` that got past its checks fails the test instead of
serving."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.foundation.test_cli_and_config import _run

pytestmark = pytest.mark.db_independent  # never uses the database under test


def test_serve_refuses_invalid_branding_and_app_redirects(tmp_path: Path) -> None:
    r = _run(
        ["serve", "--sandbox", "--port", "1"],
        tmp_path,
        PBF_DATA_DIR=str(tmp_path / "var"),
        PBF_BRANDING__ACCENT_COLOR="red",
        PBF_API__ALLOWED_APP_REDIRECTS='["com.example.*:/connected"]',
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "PBF_BRANDING__ACCENT_COLOR: Value error, must be a CSS colour" in r.stderr
    assert "PBF_API__ALLOWED_APP_REDIRECTS" in r.stderr and "wildcard" in r.stderr


def test_serve_refuses_an_insecure_logo_in_production(tmp_path: Path) -> None:
    r = _run(
        ["serve"],
        tmp_path,
        PBF_MODE="production",
        PBF_BRANDING__LOGO_URL="http://127.0.0.1:9000/logo.png",
    )
    assert r.returncode == 2
    assert "PBF_BRANDING__LOGO_URL must be an https:// URL" in r.stderr
