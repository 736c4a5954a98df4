"""Every fixture lives in ``tests/fixtures/`` (one module per domain), registered here.

A folder's ``conftest.py`` only picks, for its tests, which fixture plays ``app`` or
``harness``. Helpers are imported from ``tests.fixtures.*``, never from a conftest.
"""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.app",
    "tests.fixtures.browser",
    "tests.fixtures.connect",
    "tests.fixtures.events",
    "tests.fixtures.fivetran",
    "tests.fixtures.live_server",
    "tests.fixtures.onboarding",
    "tests.fixtures.providers",
    "tests.fixtures.vault",
]
