"""B3 fleet operations: the schema policy applied to 2,000 connections under a 200 req/s budget.

Set-up: 2,000 end-users with one connected connection each in the service's database, the
same connections (with their schema configs) in a stand-alone simulator process
(:mod:`bench.sim_server`) that allows 200 requests/s (token bucket, burst 200; above it 429
with Retry-After) and answers after 50 ms. The policy lowers ``schema_change_handling`` and
blocks one table, so every connection needs a GET and a PATCH.

Run: the real command ``pbf-headless onboarding apply-schema-policy`` in its own process,
with the client's per-second budget set to the simulator's limit
(``PBF_FIVETRAN__REQUESTS_PER_SECOND=200``, burst 20).

Figures: elapsed seconds of the operation (from the command's summary; process start-up is
reported apart) against calls ÷ budget (target ≤ 1.1×), the 429s the simulator answered, the
429s that escaped into a connection's result (target 0) and the connections not updated.

Run alone: ``.venv/bin/python -m bench.bench_fleet [--connections 2000 --rate 200]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import PYTHON, ROOT, database, free_port, seed, server, service_env
from bench.results import Row, render

SERVICE = "google_analytics_4"  # what bench.harness.seed stores
RATE = 200.0
CLIENT_BURST = 20
LATENCY = 0.05
TARGET = 1.1


def run(connections: int = 2000, rate: float = RATE, concurrency: int = 16) -> list[Row]:
    from app.sandbox.fivetran.state import generated_schema

    with database("sqlite") as db:
        s = seed(db, end_users=connections, per_user=1)
        fids = [(f"ft_{i:06d}_0", SERVICE, f"ga4_bench_{i:06d}_0") for i in range(connections)]
        seed_file = db.data_dir / "sim-seed.json"
        seed_file.write_text(json.dumps(fids))
        first_table = next(iter(generated_schema(SERVICE, "schema", "x")["schemas"]["x"]["tables"]))
        policy = {"schema_change_handling": "BLOCK_ALL", "blocked_tables": [f"*.{first_table}"]}
        port = free_port()
        argv = [
            PYTHON,
            "-m",
            "bench.sim_server",
            "--port",
            str(port),
            "--seed",
            str(seed_file),
            "--per-second",
            str(rate),
            "--latency",
            str(LATENCY),
        ]
        with server(argv, service_env(db), port, "/_control/state") as sim:
            report = Path(tempfile.mkstemp(prefix="pbf-bench-fleet-", suffix=".jsonl")[1])
            env = service_env(
                db,
                PBF_FIVETRAN__BASE_URL=sim.base,
                PBF_FIVETRAN__REQUESTS_PER_SECOND=str(rate),
                PBF_FIVETRAN__REQUESTS_BURST=str(CLIENT_BURST),
                PBF_ONBOARDING__SCHEMA_POLICY=json.dumps(policy),
                PBF_LOG_LEVEL="WARNING",
            )
            started = time.monotonic()
            sim_cpu0 = sim.cpu_seconds()
            kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = subprocess.run(
                [
                    PYTHON,
                    "-m",
                    "app.cli",
                    "onboarding",
                    "apply-schema-policy",
                    "--report",
                    str(report),
                    "--concurrency",
                    str(concurrency),
                ],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            wall = time.monotonic() - started
            kids = resource.getrusage(resource.RUSAGE_CHILDREN)
            cli_cpu = (kids.ru_utime - kids0.ru_utime) + (kids.ru_stime - kids0.ru_stime)
            sim_cpu = sim.cpu_seconds() - sim_cpu0
            lines = [json.loads(x) for x in report.read_text().splitlines() if x.strip()]
            report.unlink(missing_ok=True)
            limit = httpx.get(f"{sim.base}/_control/rate-limit", timeout=30).json()["data"]
    summary_lines = [x for x in proc.stderr.splitlines() if x.startswith('{"summary"')]
    if not summary_lines:
        raise RuntimeError(f"fleet command failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads(summary_lines[-1])["summary"]
    calls = int(summary["requests"])
    ideal = calls / rate
    elapsed = float(summary["seconds"])
    escaped = sum(1 for x in lines if (x.get("error") or {}).get("status") == 429)
    updated = sum(1 for x in lines if x.get("outcome") == "updated")
    del s
    return [
        Row(
            "B3",
            f"apply schema policy to {connections} connections, {rate:g} req/s budget",
            elapsed,
            "s",
            f"calls / budget ({calls} calls / {rate:g}/s)",
            ideal,
            f"<= {TARGET}x",
            elapsed / ideal <= TARGET,
            extra={"summary": summary, "command_wall_seconds": round(wall, 1)},
        ),
        Row(
            "B3",
            "  command wall time incl. process start-up",
            wall,
            "s",
        ),
        Row(
            "B3",
            "  command CPU per Fivetran call (incl. start-up)",
            cli_cpu * 1000 / max(calls, 1),
            "ms",
            f"simulator CPU per call ({sim_cpu:.1f} s in all)",
            sim_cpu * 1000 / max(calls, 1),
            extra={"command_cpu_seconds": round(cli_cpu, 2), "sim_cpu_seconds": round(sim_cpu, 2)},
        ),
        Row(
            "B3",
            "  429s that escaped into a connection's result",
            escaped,
            "429s",
            f"429s answered by the simulator (retried): {limit['refused']}",
            None,
            "0",
            escaped == 0,
        ),
        Row(
            "B3",
            "  connections updated / selected",
            updated,
            "conns",
            "selected",
            summary["selected"],
            "all",
            updated == summary["selected"] == connections,
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    print(render(run(args.connections, args.rate, args.concurrency)))
