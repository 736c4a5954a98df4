"""B6 scale-out on PostgreSQL: more worker processes, and API processes plus a worker.

1. Status reads (B1's ``GET /v1/connections/{id}``, c64) on ``serve --workers 2`` against
   ``serve`` with one worker, measured alternately in the same run: throughput, per process.
2. Onboardings (B2's flow, 50 ms upstream) on ``serve --workers 2``. The sandbox
   counterparties live in each worker process, so every flow runs on one keep-alive
   connection (one worker) and creates its end-user first, on that worker.
3. Two API processes (``serve``, no in-process event worker) and a separate ``pbf-headless
   worker`` delivering the signed event feed to a sink in this process: flows split over
   both APIs; then the deliveries the sink received (unique and duplicate event ids) against
   the events the database holds for the endpoint, and connections created against flows
   requested.

Run alone: ``.venv/bin/python -m bench.bench_scaleout``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.bench_onboarding import APP_ORIGIN, LATENCY, FlowStats, one_flow, set_latency
from bench.harness import (
    PYTHON,
    Database,
    Server,
    api_server,
    database,
    median,
    pg_available,
    seed,
    server,
    service_env,
    wrk,
)
from bench.results import Row, render

SINK_SECRET = "bench-sink-secret-0123456789"


# ------------------------------------------------------------------------------- 1. reads


def reads(db: Database, key: str, cid: str, seconds: float, runs: int) -> list[Row]:
    auth = {"Authorization": f"Bearer {key}"}
    path = f"/v1/connections/{cid}"
    with api_server(db) as one, api_server(db, workers=2) as two:
        for srv in (one, two):
            wrk(srv.base + path, connections=64, seconds=1, headers=auth)
        singles, doubles = [], []
        for _ in range(runs):
            singles.append(wrk(one.base + path, connections=64, seconds=seconds, headers=auth))
            doubles.append(wrk(two.base + path, connections=64, seconds=seconds, headers=auth))
        workers = len(two.pids())
    single = median([r.rps for r in singles])
    double = median([r.rps for r in doubles])
    return [
        Row(
            "B6",
            f"GET /v1/connections/{{id}} c64, serve --workers {workers} [postgresql]",
            double,
            "req/s",
            "one worker, same run",
            single,
            extra={"per_process": double / workers},
        ),
        Row(
            "B6",
            "  same, per worker process",
            double / workers,
            "req/s",
            "one worker, same run",
            single,
        ),
    ]


# --------------------------------------------------------------------- 2./3. onboardings


async def _pinned_flows(bases: list[str], key: str, flows: int, concurrency: int) -> FlowStats:
    """Each flow: its own keep-alive connection (one worker), end-user then onboarding."""
    stats = FlowStats()
    sem = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {key}"}

    async def run(i: int) -> None:
        name = f"so-{i:05d}"
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with (
            sem,
            httpx.AsyncClient(base_url=bases[i % len(bases)], timeout=300, limits=limits) as c,
        ):
            r = await c.put(f"/v1/end-users/{name}", json={"name": name}, headers=headers)
            if r.status_code not in (200, 201):
                stats.failed += 1
                stats.errors.append(f"end-user {r.status_code} {r.text[:200]}")
                return
            await one_flow(c, key, name, stats)

    await asyncio.gather(*(run(i) for i in range(flows)))
    return stats


def _flows(
    servers: list[Server], key: str, flows: int, concurrency: int
) -> tuple[FlowStats, float, float]:
    for srv in servers:
        _set_latency_everywhere(srv, LATENCY)
    cpu0 = sum(s.cpu_seconds() for s in servers)
    started = time.perf_counter()
    stats = asyncio.run(_pinned_flows([s.base for s in servers], key, flows, concurrency))
    elapsed = time.perf_counter() - started
    cpu = sum(s.cpu_seconds() for s in servers) - cpu0
    return stats, elapsed, cpu


def _set_latency_everywhere(srv: Server, seconds: float) -> None:
    """The control call reaches one worker per connection: repeat on fresh connections until
    every worker process has had it (each answers on its own connection)."""
    for _ in range(4 * len(srv.pids())):
        set_latency(srv.base, seconds)


def onboarding_two_workers(db: Database, key: str, flows: int, concurrency: int) -> list[Row]:
    with api_server(db, workers=2, PBF_API__ALLOWED_ORIGINS=json.dumps([APP_ORIGIN])) as api:
        stats, elapsed, cpu = _flows([api], key, flows, concurrency)
        workers = len(api.pids())
    rate = stats.completed / elapsed
    return [
        Row(
            "B6",
            f"onboardings/s (end-user + flow), serve --workers {workers} [postgresql]",
            rate,
            "flows/s",
            "",
            None,
            extra={"failed": stats.failed, "errors": stats.errors[:5]},
        ),
        Row("B6", "  same, per worker process", rate / workers, "flows/s"),
        Row(
            "B6",
            "  CPU per flow, all workers",
            cpu * 1000 / max(stats.completed, 1),
            "ms",
        ),
        Row(
            "B6",
            "  flows completed / requested",
            stats.completed,
            "flows",
            "requested",
            flows,
            "all",
            stats.completed == flows,
        ),
    ]


@dataclass
class Sink:
    """Receives the signed event feed; counts every delivery by event id."""

    port: int = 0
    ids: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> ThreadingHTTPServer:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                event_id = self.headers.get("PBF-Event-Id", "")
                with sink.lock:
                    sink.ids[event_id] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd


async def _count(db: Database, stmt: Any) -> int:
    from app.db import create_engine

    engine = create_engine(db.url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(stmt) or 0)
    finally:
        await engine.dispose()


def _expected_deliveries(db: Database) -> int:
    """Deliveries to the sink the database holds (one per event fanned out to it)."""
    from app.events.models import EventDelivery

    stmt = (
        select(func.count()).select_from(EventDelivery).where(EventDelivery.endpoint_id == "sink")
    )
    return asyncio.run(_count(db, stmt))


def _connected(db: Database) -> int:
    """Connections of the flows' end-users that reached ``connected``."""
    from app.onboarding.models import Connection, EndUser

    stmt = (
        select(func.count())
        .select_from(Connection)
        .join(EndUser, EndUser.id == Connection.end_user_id)
        .where(Connection.state == "connected", EndUser.external_id.like("so-%"))
    )
    return asyncio.run(_count(db, stmt))


def api_plus_worker(db: Database, key: str, flows: int, concurrency: int) -> list[Row]:
    sink = Sink()
    httpd = sink.start()
    endpoints = json.dumps(
        [{"id": "sink", "url": f"http://127.0.0.1:{sink.port}/events", "secrets": [SINK_SECRET]}]
    )
    common = {
        "PBF_EVENTS__ENDPOINTS": endpoints,
        "PBF_EVENTS__RUN_WORKER_IN_API": "false",
        "PBF_EVENTS__POLL_INTERVAL_SECONDS": "0.2",
        "PBF_API__ALLOWED_ORIGINS": json.dumps([APP_ORIGIN]),
    }
    try:
        with api_server(db, **common) as a, api_server(db, **common) as b:
            worker_env = service_env(db, **common, PBF_PUBLIC_BASE_URL=a.base)
            with server(
                [PYTHON, "-m", "app.cli", "worker"], worker_env, a.port, "/healthz"
            ) as worker:
                stats, elapsed, cpu = _flows([a, b], key, flows, concurrency)
                # Webhook-driven events keep arriving after the flows: wait until the sink has
                # had every delivery the database holds, twice in a row one second apart.
                deadline = time.monotonic() + 90
                settled = 0
                while time.monotonic() < deadline and settled < 2:
                    expected = _expected_deliveries(db)
                    with sink.lock:
                        got = len(sink.ids)
                    settled = settled + 1 if got >= expected else 0
                    time.sleep(1)
                expected = _expected_deliveries(db)
                worker_cpu = worker.cpu_seconds()
            connected = _connected(db)
    finally:
        httpd.shutdown()
    with sink.lock:
        unique = len(sink.ids)
        duplicates = sum(n - 1 for n in sink.ids.values())
    rate = stats.completed / elapsed
    return [
        Row(
            "B6",
            "onboardings/s, 2 API processes + 1 worker process [postgresql]",
            rate,
            "flows/s",
            "",
            None,
            extra={"failed": stats.failed, "errors": stats.errors[:5]},
        ),
        Row("B6", "  same, per API process", rate / 2, "flows/s"),
        Row("B6", "  API CPU per flow", cpu * 1000 / max(stats.completed, 1), "ms"),
        Row("B6", "  worker process CPU (whole run)", worker_cpu, "s"),
        Row(
            "B6",
            "  connections connected / flows requested",
            connected,
            "conns",
            "requested",
            flows,
            "equal",
            connected == flows,
        ),
        Row(
            "B6",
            "  events delivered (unique ids) / deliveries in the database",
            unique,
            "events",
            "in the database",
            expected,
            "equal (nothing lost)",
            unique == expected and expected > 0,
        ),
        Row(
            "B6",
            "  duplicate deliveries",
            duplicates,
            "events",
            "",
            None,
            "0",
            duplicates == 0,
        ),
    ]


def run(seconds: float = 2.0, runs: int = 3, flows: int = 100, concurrency: int = 50) -> list[Row]:
    if not pg_available():
        return [Row("B6", "skipped: PostgreSQL not reachable", float("nan"), "")]
    rows: list[Row] = []
    with database("postgresql") as db:
        s = seed(db, end_users=1, per_user=1)
        # at least 3 s a run: under load a c64 request can take a second
        rows += reads(db, s.api_key, s.connection_ids[0], max(seconds, 3.0), runs)
        rows += onboarding_two_workers(db, s.api_key, flows, concurrency)
    with database("postgresql") as db:
        s = seed(db)
        rows += api_plus_worker(db, s.api_key, flows, concurrency)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--flows", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    print(render(run(args.seconds, args.runs, args.flows, args.concurrency)))
