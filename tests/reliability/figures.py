"""The reliability figures of one run: each scenario adds a row, the session prints one table
(``make reliability``). Loss columns must all be 0; the scenarios assert that themselves."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

#: Rows are also appended here (JSON lines) so parallel workers' rows can be printed by
#: ``python -m tests.reliability.figures FILE`` after the run (make reliability does).
FIGURES_FILE = os.environ.get("PBF_RELIABILITY_FIGURES")

LOSS_COLUMNS = (
    "tokens_lost",
    "orphans",
    "duplicates",
    "sessions_open",
    "events_undelivered",
    "events_twice",
    "5xx",
    "rows_by_refused",
)

ROWS: list[dict[str, Any]] = []


def add(scenario: str, runs: int, ok: int, **losses: int) -> None:
    row: dict[str, Any] = {"scenario": scenario, "runs": runs, "ok": ok}
    row.update({c: losses.get(c, "-") for c in LOSS_COLUMNS})
    ROWS.append(row)
    if FIGURES_FILE:
        with Path(FIGURES_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def table(rows: list[dict[str, Any]] | None = None) -> str:
    rows = ROWS if rows is None else rows
    if not rows:
        return ""
    cols = ["scenario", "runs", "ok", *LOSS_COLUMNS]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    line = " | ".join(c.ljust(widths[c]) for c in cols)
    out = [line, "-+-".join("-" * widths[c] for c in cols)]
    out += [" | ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(out)


def main(path: str) -> int:
    """Print the table of a figures file; exit 1 when any loss column is not 0."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    print(table(rows))
    bad = [r["scenario"] for r in rows for c in LOSS_COLUMNS if r[c] not in ("-", 0)]
    if bad:
        print(f"LOSSES in: {', '.join(sorted(set(bad)))}")
    return 1 if bad or not rows else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
