"""Rewrites the generated parts of the repository docs (``make docs``)."""

from __future__ import annotations

import sys
from pathlib import Path

from app.settings_doc import settings_markdown

START, END = "<!-- settings:start -->\n", "<!-- settings:end -->"


def update_readme(path: Path) -> bool:
    text = path.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = head + START + settings_markdown() + END + tail
    if new != text:
        path.write_text(new)
        return True
    return False


if __name__ == "__main__":
    changed = update_readme(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md"))
    print("README.md updated" if changed else "README.md already current")
