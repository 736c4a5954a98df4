"""Fixtures of the reliability tests (the onboarding fixtures, re-exported)."""

from tests.events.conftest import (  # noqa: F401
    clock,
    events_settings,
    receiver,
    worker_for,
)
from tests.onboarding.conftest import api, count_rows, sim  # noqa: F401
