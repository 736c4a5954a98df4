"""Here ``make_api`` is :func:`tests.fixtures.app.make_app_client` (the sandbox settings of
the test); helpers are in :mod:`tests.fixtures.sandbox`."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def make_api(make_app_client: Any) -> Any:
    """``await make_api(**settings)`` → the running app and an admin client on it."""
    return make_app_client
