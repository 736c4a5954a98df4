"""Fixtures of the reliability tests (the onboarding fixtures, re-exported)."""

from tests.events.conftest import (  # noqa: F401
    clock,
    events_settings,
    receiver,
    worker_for,
)
from tests.onboarding.conftest import api, count_rows, sim  # noqa: F401


def pytest_terminal_summary(terminalreporter: object) -> None:
    """Print the reliability table (when any scenario ran)."""
    from tests.reliability.figures import table

    text = table()
    if text:
        terminalreporter.write_sep("=", "reliability figures")  # type: ignore[attr-defined]
        terminalreporter.write_line(text)  # type: ignore[attr-defined]
