"""The reliability figures of one run: each scenario adds a row, the session prints one table
(``make reliability``). Loss columns must all be 0; the scenarios assert that themselves."""

from __future__ import annotations

from typing import Any

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


def table() -> str:
    if not ROWS:
        return ""
    cols = ["scenario", "runs", "ok", *LOSS_COLUMNS]
    widths = {c: max(len(c), *(len(str(r[c])) for r in ROWS)) for c in cols}
    line = " | ".join(c.ljust(widths[c]) for c in cols)
    out = [line, "-+-".join("-" * widths[c] for c in cols)]
    out += [" | ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in ROWS]
    return "\n".join(out)
