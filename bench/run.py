"""``make bench``: every benchmark, one table, and ``bench/results.json`` with machine info.

Each figure comes with the baseline measured in the same run (the floor app, one worker,
raw AES-GCM, the minimum a flow needs, …), their ratio and the target where the issue sets
one. Throughput on a shared machine is noisy: the ratios (floor and figure measured
alternately) and the CPU-time figures are the ones to compare between runs.

Run: ``.venv/bin/python -m bench.run [--quick] [--only B1,B5]``.
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import bench_fleet, bench_onboarding, bench_reads, bench_scaleout, bench_vault
from bench.harness import machine_info, pg_available, wrk_available
from bench.results import Row, render, save

RESULTS = Path(__file__).resolve().parent / "results.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test)")
    parser.add_argument("--only", default="", help="comma-separated ids, e.g. B1,B5")
    args = parser.parse_args()
    if not wrk_available():
        raise SystemExit("wrk is not installed (make bench installs it with apt-get)")
    # Budget: the whole run stays under 10 minutes on a busy 2-core box.
    seconds, runs = (1.0, 1) if args.quick else (2.0, 2)
    flows = 60 if args.quick else 100
    only = {x.strip().upper() for x in args.only.split(",") if x.strip()}

    def wanted(*ids: str) -> bool:
        return not only or bool(only & set(ids))

    sections: list[tuple[tuple[str, ...], str, Callable[[], list[Row]]]] = [
        (("B7",), "vault", lambda: bench_vault.run(1.0 if not args.quick else 0.3)),
        (
            ("B1",),
            "status reads",
            lambda: (
                bench_reads.reads("sqlite", seconds, runs)
                + (bench_reads.reads("postgresql", seconds, runs) if pg_available() else [])
            ),
        ),
        (("B5",), "memory", lambda: bench_reads.memory(seconds)),
        (
            ("B2", "B4"),
            "onboarding",
            lambda: bench_onboarding.run(flows=flows, concurrency=100),
        ),
        (
            ("B3",),
            "fleet operations",
            lambda: bench_fleet.run(connections=500 if args.quick else 2000),
        ),
        (
            ("B6",),
            "scale-out",
            lambda: bench_scaleout.run(seconds, runs, flows=flows // 2, concurrency=50),
        ),
    ]
    machine = machine_info()
    started = time.monotonic()
    rows: list[Row] = []
    notes: dict[str, object] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "postgresql": pg_available(),
    }
    failures = 0
    for ids, name, fn in sections:
        if not wanted(*ids):
            continue
        t = time.monotonic()
        print(f"== {name} ({', '.join(ids)}) ...", flush=True)
        try:
            rows += fn()
        except Exception:
            failures += 1
            notes[f"{name}_error"] = traceback.format_exc()[-2000:]
            traceback.print_exc()
        notes[f"{name}_seconds"] = round(time.monotonic() - t, 1)
    notes["total_seconds"] = round(time.monotonic() - started, 1)
    notes["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    print()
    print(
        f"pbf-headless benchmarks  ({machine.get('cpu', '?')}, {machine.get('cpus')} CPUs, "
        f"load {' '.join(machine.get('loadavg_at_start', []))} at start, "
        f"{notes['total_seconds']} s)"
    )
    print(render(rows))
    save(RESULTS, rows, machine, notes)
    print(f"\nwrote {RESULTS}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
