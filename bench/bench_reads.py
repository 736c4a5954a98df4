"""B1 status reads and B5 memory, against the floor measured in the same run.

B1: ``GET /v1/connections/{id}`` and ``GET /v1/connections?end_user=`` at c1/c16/c64 (wrk,
keep-alive, median of several runs) on one uvicorn worker, against :mod:`bench.floor_app`
reading the same row by primary key (and answering without a database), on SQLite and
PostgreSQL. The simulator's request log proves status reads make no Fivetran call.

B5: RSS of one worker with an empty database, and with 10,000 end-users and connections stored
while wrk reads random connections at c16.

Run alone: ``.venv/bin/python -m bench.bench_reads [--seconds 2 --runs 3]``.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
from pathlib import Path

from bench.harness import (
    Paired,
    Server,
    api_server,
    database,
    fivetran_request_count,
    floor_server,
    paired_wrk,
    pg_available,
    seed,
    wrk,
)
from bench.results import Row, render

READ_TARGET = 0.8
LEVELS = (1, 16, 64)
RSS_TARGET_MB = 150.0


def reads(kind: str, seconds: float, runs: int) -> list[Row]:
    with database(kind) as db:
        s = seed(db, end_users=1, per_user=10)
        cid = s.connection_ids[0]
        auth = {"Authorization": f"Bearer {s.api_key}"}
        with floor_server(db) as floor, api_server(db) as api:
            none = (floor, f"{floor.base}/floor/none")
            row = (floor, f"{floor.base}/floor/connections/{cid}")
            page = (floor, f"{floor.base}/floor/connections?end_user={s.end_user}")

            def pair(
                base: tuple[Server, str], path: str, c: int, headers: dict[str, str]
            ) -> Paired:
                return paired_wrk(
                    base,
                    (api, api.base + path),
                    connections=c,
                    seconds=seconds,
                    runs=runs,
                    headers=headers,
                )

            before = fivetran_request_count(api.base)
            health = pair(none, "/healthz", 16, {})
            me = pair(row, "/v1/me", 16, auth)
            one = {c: pair(row, f"/v1/connections/{cid}", c, auth) for c in LEVELS}
            listing = {
                c: pair(page, f"/v1/connections?end_user={s.end_user}", c, auth) for c in LEVELS
            }
            calls = fivetran_request_count(api.base) - before
    reads_made = sum(p.figure.requests for p in (*one.values(), *listing.values()))
    bad = sum(p.figure.non_2xx for p in (me, *one.values(), *listing.values()))
    rows = [
        Row("B1", f"floor, no database, c16 [{kind}]", health.floor.rps, "req/s"),
        Row("B1", f"floor, row read, c16 [{kind}]", one[16].floor.rps, "req/s"),
        _row(f"/healthz c16 [{kind}]", "floor no DB c16", health),
        _row(f"/v1/me (API-key auth) c16 [{kind}]", "floor row read c16", me),
    ]
    for label, floor_name, results in (
        ("GET /v1/connections/{id}", "floor row read", one),
        ("GET /v1/connections?end_user= (10 items)", "floor page read", listing),
    ):
        for c, p in results.items():
            rows.append(_row(f"{label} c{c} [{kind}]", f"{floor_name} c{c}", p, READ_TARGET))
            rows.append(
                Row(
                    "B1",
                    "  same, requests per CPU-second",
                    p.figure.per_cpu_second,
                    "req/cpu-s",
                    "floor, same",
                    p.floor.per_cpu_second,
                    ratio=p.cpu_ratio,
                )
            )
            rows.append(
                Row(
                    "B1",
                    f"  same, latency p50 (p99 {p.figure.p99_ms:.1f} ms)",
                    p.figure.p50_ms,
                    "ms",
                    f"floor p50 (p99 {p.floor.p99_ms:.1f} ms)",
                    p.floor.p50_ms,
                )
            )
    rows.append(
        Row(
            "B1",
            f"Fivetran calls per status read [{kind}]",
            calls / max(reads_made, 1),
            "calls",
            f"{calls} calls in {reads_made} reads",
            None,
            "0",
            calls == 0 and bad == 0,
            extra={"non_2xx": bad},
        )
    )
    return rows


def _row(figure: str, baseline: str, p: Paired, target: float | None = None) -> Row:
    return Row(
        "B1",
        figure,
        p.figure.rps,
        "req/s",
        baseline,
        p.floor.rps,
        f">= {target}x" if target else "",
        None if target is None else p.ratio >= target,
        p.ratio,
        extra={
            "p50_ms": p.figure.p50_ms,
            "p99_ms": p.figure.p99_ms,
            "floor_p50_ms": p.floor.p50_ms,
            "floor_p99_ms": p.floor.p99_ms,
            "per_cpu_second": p.figure.per_cpu_second,
            "floor_per_cpu_second": p.floor.per_cpu_second,
            "cpu_ratio": p.cpu_ratio,
        },
    )


def memory(seconds: float) -> list[Row]:
    with database("sqlite") as empty_db, api_server(empty_db) as api:
        httpx_warm(api.base)
        empty = api.rss_mb()
    with database("sqlite") as db:
        s = seed(db, end_users=10_000, per_user=1)
        script = _random_ids_script(s.connection_ids)
        with api_server(db) as api:
            peak = [api.rss_mb()]
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.2):
                    peak.append(api.rss_mb())

            t = threading.Thread(target=sample, daemon=True)
            t.start()
            try:
                wrk(
                    f"{api.base}/v1/connections/",
                    connections=16,
                    seconds=max(seconds * 3, 5),
                    headers={"Authorization": f"Bearer {s.api_key}"},
                    script=str(script),
                )
            finally:
                stop.set()
                t.join()
            script.unlink(missing_ok=True)
    loaded = max(peak)
    return [
        Row("B5", "RSS, one worker, empty database (after a request)", empty, "MB"),
        Row(
            "B5",
            "RSS, 10,000 end-users+connections, under c16 reads (peak)",
            loaded,
            "MB",
            "RSS empty database",
            empty,
            f"<= {RSS_TARGET_MB:.0f} MB",
            loaded <= RSS_TARGET_MB,
        ),
    ]


def httpx_warm(base: str) -> None:
    import httpx

    for _ in range(20):
        httpx.get(f"{base}/healthz")


def _random_ids_script(ids: list[str]) -> Path:
    """A wrk Lua script requesting a random connection of ``ids`` each time."""
    sample = random.sample(ids, min(len(ids), 10_000))
    fd = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    with fd:
        fd.write("ids = {" + ",".join(f'"{i}"' for i in sample) + "}\n")
        fd.write("math.randomseed(7)\n")
        fd.write(
            "request = function()\n"
            "  return wrk.format(nil, wrk.path .. ids[math.random(#ids)])\n"
            "end\n"
        )
    return Path(fd.name)


def run(seconds: float = 2.0, runs: int = 3) -> list[Row]:
    rows = reads("sqlite", seconds, runs)
    if pg_available():
        rows += reads("postgresql", seconds, runs)
    rows += memory(seconds)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    out: list[Row] = []
    if args.db in ("sqlite", "both"):
        out += reads("sqlite", args.seconds, args.runs)
    if args.db in ("postgresql", "both"):
        out += reads("postgresql", args.seconds, args.runs)
    if not args.no_memory:
        out += memory(args.seconds)
    print(render(out))
