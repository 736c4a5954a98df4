"""A stand-alone Fivetran simulator process for B3 (a **simulation**; benchmarks only).

Serves :func:`app.sandbox.fivetran.create_simulator` alone on loopback with the connections
of a seed file already in its state (``[[fivetran_id, service, schema], …]``, each with the
schema config a reload would capture), its simulated latency and its rate limit
(:mod:`app.sandbox.fivetran.ratelimit`) set. The fleet command under test runs in another
process and reaches it over HTTP, so neither side's CPU is counted against the other.

Run: ``python -m bench.sim_server --port P --seed FILE --per-second 200 --latency 0.05``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from app.sandbox.fivetran import create_simulator
from app.sandbox.fivetran.state import generated_schema, now_iso


def build(seed: Path, per_second: float, burst: float | None, latency: float) -> Any:
    holder: dict[str, httpx.AsyncClient] = {}

    def http() -> httpx.AsyncClient:
        if "http" not in holder:
            holder["http"] = httpx.AsyncClient()
        return holder["http"]

    app = create_simulator(get_http=http)
    sim = app.state.simulator
    for fid, service, schema in json.loads(seed.read_text()):
        sim.state.connections[fid] = {
            "id": fid,
            "service": service,
            "schema": schema,
            "group_id": "bench_group",
            "paused": False,
            "created_at": now_iso(),
            "status": {"setup_state": "connected", "sync_state": "scheduled"},
            "config": {},
        }
        sim.state.schema_configs[fid] = generated_schema(service, "schema", schema)
    sim.latency.seconds = latency
    app.state.rate_limit.configure(per_second, burst)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=Path, required=True)
    parser.add_argument("--per-second", type=float, default=200.0)
    parser.add_argument("--burst", type=float, default=None)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    app = build(args.seed, args.per_second, args.burst, args.latency)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
