"""The README's configuration table is exactly the settings reference (``make docs``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings_doc import settings_markdown

pytestmark = pytest.mark.db_independent  # never uses the database under test

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- settings:start -->\n", "<!-- settings:end -->"


def test_readme_configuration_table_is_current():
    text = README.read_text()
    assert START in text and END in text, "README lacks the settings markers"
    table = text.split(START, 1)[1].split(END, 1)[0]
    assert table == settings_markdown(), "README settings table is stale: run 'make docs'"


def test_readme_names_the_two_commands():
    text = README.read_text()
    assert "make run" in text and "make test" in text
