"""Fixtures of the reliability tests (the onboarding fixtures, re-exported)."""

from tests.onboarding.conftest import api, count_rows, sim  # noqa: F401
