"""Fixtures of the audit tests."""

from tests.events.conftest import clock, worker_for  # noqa: F401
from tests.onboarding.conftest import api, count_rows, sim  # noqa: F401
