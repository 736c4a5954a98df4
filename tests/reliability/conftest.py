"""Reliability tests use the shared fixtures (:mod:`tests.fixtures`) and print a figures table."""


def pytest_terminal_summary(terminalreporter: object) -> None:
    """Print the reliability table (when any scenario ran)."""
    from tests.reliability.figures import table

    text = table()
    if text:
        terminalreporter.write_sep("=", "reliability figures")  # type: ignore[attr-defined]
        terminalreporter.write_line(text)  # type: ignore[attr-defined]
