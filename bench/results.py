"""One row of the benchmark table, and the table itself."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    """A figure, the baseline measured in the same run, their ratio and the target."""

    id: str  # B1 … B7
    figure: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    target: str = ""
    #: True/False when the target is checked against ``ratio`` or ``value``; None: reported only
    met: bool | None = None
    ratio: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ratio is None and self.baseline_value:
            self.ratio = self.value / self.baseline_value


def _num(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def render(rows: list[Row]) -> str:
    head = ("id", "figure", "value", "unit", "baseline (same run)", "base", "ratio", "target", "ok")
    lines = [
        (
            r.id,
            r.figure,
            _num(r.value),
            r.unit,
            r.baseline,
            _num(r.baseline_value),
            "-" if r.ratio is None or math.isnan(r.ratio) else f"{r.ratio:.2f}x",
            r.target,
            {True: "yes", False: "NO", None: ""}[r.met],
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=False)]
    out = []
    for i, line in enumerate([head, *lines]):
        out.append("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def save(path: Path, rows: list[Row], machine: dict[str, Any], notes: dict[str, Any]) -> None:
    path.write_text(
        json.dumps(
            {"machine": machine, "notes": notes, "rows": [asdict(r) for r in rows]},
            indent=2,
            default=str,
        )
        + "\n"
    )
