"""Real-browser tests: skipped, with one line saying why, when Chromium or Playwright is
missing. The harness (live server, Chromium, pages) is :mod:`tests.fixtures.live_server`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.live_server import missing


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = missing()
    if reason is None:
        return
    here = Path(__file__).resolve().parent
    marker = pytest.mark.skip(reason=reason)
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(here):
            item.add_marker(marker)
