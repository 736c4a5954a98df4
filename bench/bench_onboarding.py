"""B2 onboarding throughput and CPU, B4 cost per onboarding.

Complete OAuth onboardings against a real ``pbf-headless serve --sandbox`` process: connect
session → start (the browser's form POST) → consent at the sandbox authorization server
(auto-approve) → callback (code exchange, Fivetran create, setup tests) → ``connected``.
Both counterparties answer after a simulated latency (``/_control/latency``, an
``asyncio.sleep`` in the server), 50 ms by default, and the flows run at concurrency 100.

Figures: flows/s, flow latency p50/p99, CPU milliseconds per flow of the server process
(``/proc/<pid>/stat`` utime+stime delta; the counterparties — simulator and sandbox
authorization server — run in a ``sandbox-counterparties`` process of their own, whose CPU is
shown beside it, not counted), and from ``/metrics`` the Fivetran calls, OAuth
token calls and SQL statements per flow (B4) against the minimum the flow needs.

Run alone: ``.venv/bin/python -m bench.bench_onboarding [--flows 200 --concurrency 100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import httpx

from bench.harness import (
    Database,
    Server,
    api_server,
    counterparties_server,
    database,
    free_port,
    median,
    pg_available,
    seed,
)
from bench.results import Row, render

APP_ORIGIN = "https://app.example.com"
SERVICE = "hubspot"
LATENCY = 0.05
CPU_TARGET_MS = 15.0

#: The least a completed OAuth onboarding needs (see bench/README.md for the reasoning).
MIN_FIVETRAN_CALLS = 4
MIN_OAUTH_CALLS = 1
MIN_STATEMENTS = 20


def flow_env() -> dict[str, str]:
    return {"PBF_API__ALLOWED_ORIGINS": json.dumps([APP_ORIGIN])}


@dataclass
class FlowStats:
    completed: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    connection_ids: list[str] = field(default_factory=list)
    #: seconds spent in each step (session, start, consent, callback), summed over flows
    steps: dict[str, float] = field(default_factory=dict)

    def step(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.steps[name] = self.steps.get(name, 0.0) + now - since
        return now


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


async def one_flow(client: httpx.AsyncClient, key: str, end_user: str, stats: FlowStats) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    try:
        r = await client.post(
            "/v1/connect-sessions",
            json={"end_user": end_user, "service": SERVICE, "return_to": f"{APP_ORIGIN}/done"},
            headers=headers,
        )
        assert r.status_code == 201, f"session {r.status_code} {r.text[:200]}"
        t = stats.step("session", started)
        start = await client.post(r.json()["connect_url"], headers={"Origin": APP_ORIGIN})
        assert start.status_code == 303, f"start {start.status_code} {start.text[:200]}"
        binding = start.headers["set-cookie"].split(";", 1)[0]
        t = stats.step("start", t)
        consent = await client.get(start.headers["location"] + "&login_hint=auto")
        assert consent.status_code in (302, 303), f"consent {consent.status_code}"
        t = stats.step("consent", t)
        done = await client.get(consent.headers["location"], headers={"Cookie": binding})
        assert done.status_code == 303, f"callback {done.status_code} {done.text[:200]}"
        stats.step("callback", t)
        back = _query(done.headers["location"])
        assert back.get("status") == "connected", f"callback result {back}"
        stats.connection_ids.append(back["connection_id"])
    except Exception as exc:
        stats.failed += 1
        stats.errors.append(str(exc)[:300])
        return
    stats.completed += 1
    stats.latencies.append(time.perf_counter() - started)


async def _prepare(base: str, key: str, count: int, prefix: str) -> list[str]:
    """End-users (their Fivetran groups and destinations) exist before the timed flows."""
    names = [f"{prefix}-{i:05d}" for i in range(count)]
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        sem = asyncio.Semaphore(20)

        async def put(name: str) -> None:
            async with sem:
                r = await client.put(f"/v1/end-users/{name}", json={"name": name}, headers=headers)
                assert r.status_code in (200, 201), r.text

        await asyncio.gather(*(put(n) for n in names))
    return names


async def _run_flows(
    bases: list[str], key: str, end_users: list[str], concurrency: int
) -> tuple[FlowStats, float]:
    stats = FlowStats()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    clients = [
        httpx.AsyncClient(base_url=b, timeout=300, limits=limits, follow_redirects=False)
        for b in bases
    ]
    sem = asyncio.Semaphore(concurrency)

    async def run(i: int, end_user: str) -> None:
        async with sem:
            await one_flow(clients[i % len(clients)], key, end_user, stats)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(run(i, eu) for i, eu in enumerate(end_users)))
    finally:
        for c in clients:
            await c.aclose()
    return stats, time.perf_counter() - started


def set_latency(base: str, seconds: float) -> None:
    for app in ("fivetran", "oauth"):
        r = httpx.post(f"{base}/sandbox/{app}/_control/latency", json={"seconds": seconds})
        r.raise_for_status()


_METRIC = re.compile(r"^(\w+)(?:\{([^}]*)\})? ([0-9.e+\-]+)$")


def counters(base: str, sandbox: str | None = None) -> dict[str, float]:
    """Fivetran calls and SQL statements so far (``/metrics`` of the service at ``base``), and
    token-endpoint hits (the sandbox authorization server's own log, at ``sandbox`` — the
    counterparties process — or in the service: ``/metrics`` labels the simulator's token
    introspection ``oauth:<provider>`` too, and that is the simulator's call, not ours)."""
    out = {"fivetran": 0.0, "oauth": 0.0, "statements": 0.0}
    hits = httpx.get(f"{sandbox or base}/sandbox/oauth/_control/token-requests", timeout=30)
    out["oauth"] = float(len(hits.json()["items"]))
    text = httpx.get(f"{base}/metrics", timeout=30).text
    for line in text.splitlines():
        m = _METRIC.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        if name == "pbf_outbound_requests_total" and 'target="fivetran"' in labels:
            out["fivetran"] += value
        elif name == "pbf_db_statements_total":
            out["statements"] += value
    return out


@dataclass
class OnboardingResult:
    flows: int
    completed: int
    failed: int
    elapsed: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_flow: float
    #: CPU of the counterparties process per flow (None when they run inside the service)
    counterparties_cpu_ms_per_flow: float | None
    fivetran_per_flow: float
    oauth_per_flow: float
    statements_per_flow: float
    errors: list[str]
    connection_ids: list[str]
    step_ms: dict[str, float]

    @property
    def flows_per_second(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0


def measure(
    servers: list[Server],
    key: str,
    *,
    flows: int,
    concurrency: int,
    latency: float,
    prefix: str,
    counterparties: Server | None = None,
) -> OnboardingResult:
    base = servers[0].base
    end_users = asyncio.run(_prepare(base, key, flows, prefix))
    sandboxes = [counterparties.base] if counterparties else [s.base for s in servers]
    sandbox = counterparties.base if counterparties else None
    for target in sandboxes:
        set_latency(target, latency)
    try:
        before = [counters(s.base, sandbox) for s in servers]
        cpu0 = sum(s.cpu_seconds() for s in servers)
        cp0 = counterparties.cpu_seconds() if counterparties else 0.0
        stats, elapsed = asyncio.run(
            _run_flows([s.base for s in servers], key, end_users, concurrency)
        )
        cpu = sum(s.cpu_seconds() for s in servers) - cpu0
        cp_cpu = counterparties.cpu_seconds() - cp0 if counterparties else None
        after = [counters(s.base, sandbox) for s in servers]
    finally:
        for target in sandboxes:
            set_latency(target, 0)
    done = max(stats.completed, 1)

    def per_flow(name: str) -> float:
        return sum(a[name] - b[name] for a, b in zip(after, before, strict=True)) / done

    lat = sorted(stats.latencies) or [float("nan")]
    return OnboardingResult(
        flows,
        stats.completed,
        stats.failed,
        elapsed,
        median(lat) * 1000,
        lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        cpu * 1000 / done,
        None if cp_cpu is None else cp_cpu * 1000 / done,
        per_flow("fivetran"),
        per_flow("oauth"),
        per_flow("statements"),
        stats.errors[:5],
        stats.connection_ids,
        {k: v * 1000 / done for k, v in stats.steps.items()},
    )


def _flow_rows(
    kind: str, label: str, r: OnboardingResult, latency: float, concurrency: int
) -> list[Row]:
    # Latency-bound rate: every flow waits at least its upstream round-trips (one consent
    # redirect, one token exchange, the Fivetran calls), so c flows in parallel cannot finish
    # faster than c / (calls * latency) per second.
    upstream = (1 + r.oauth_per_flow + r.fivetran_per_flow) * latency
    where = (
        " (counterparties in their own process)"
        if r.counterparties_cpu_ms_per_flow is not None
        else " incl. in-process counterparties"
    )
    bound = concurrency / upstream if upstream else float("nan")
    return [
        Row(
            "B2",
            f"onboardings/s, c{concurrency}, {latency * 1000:.0f} ms upstream{label} [{kind}]",
            r.flows_per_second,
            "flows/s",
            "latency-bound rate c/(upstream calls x latency)",
            bound,
            extra={"completed": r.completed, "failed": r.failed, "errors": r.errors},
        ),
        Row(
            "B2",
            f"  flow latency p50 (p99 {r.p99_ms:.0f} ms){label} [{kind}]",
            r.p50_ms,
            "ms",
            "upstream waits of one flow",
            upstream * 1000,
        ),
        Row(
            "B2",
            f"  CPU per flow, service process{where}{label} [{kind}]",
            r.cpu_ms_per_flow,
            "ms",
            "counterparties' own CPU per flow" if r.counterparties_cpu_ms_per_flow else "",
            r.counterparties_cpu_ms_per_flow,
            f"<= {CPU_TARGET_MS:.0f} ms",
            r.cpu_ms_per_flow <= CPU_TARGET_MS,
        ),
        Row(
            "B2",
            f"  flows completed / requested{label} [{kind}]",
            r.completed,
            "flows",
            "requested",
            r.flows,
            "all, none failed",
            r.completed == r.flows and r.failed == 0,
        ),
    ]


def cost_rows(kind: str, r: OnboardingResult) -> list[Row]:
    return [
        Row(
            "B4",
            f"Fivetran calls per onboarding [{kind}]",
            r.fivetran_per_flow,
            "calls",
            "minimum the flow needs",
            MIN_FIVETRAN_CALLS,
        ),
        Row(
            "B4",
            f"OAuth token-endpoint calls per onboarding [{kind}]",
            r.oauth_per_flow,
            "calls",
            "minimum the flow needs",
            MIN_OAUTH_CALLS,
        ),
        Row(
            "B4",
            f"SQL statements per onboarding (4 requests) [{kind}]",
            r.statements_per_flow,
            "stmts",
            "minimum the flow needs",
            MIN_STATEMENTS,
        ),
    ]


def onboarding(kind: str, flows: int, concurrency: int, latency: float) -> list[Row]:
    with database(kind) as db:
        s = seed(db)
        port = free_port()
        with (
            counterparties_server(db, port) as cp,
            api_server(db, port=port, counterparties=cp, **flow_env()) as api,
        ):
            r = measure(
                [api],
                s.api_key,
                flows=flows,
                concurrency=concurrency,
                latency=latency,
                prefix="ob",
                counterparties=cp,
            )
    return _flow_rows(kind, "", r, latency, concurrency) + cost_rows(kind, r)


def run(flows: int = 200, concurrency: int = 100, latency: float = LATENCY) -> list[Row]:
    rows = onboarding("sqlite", flows, concurrency, latency)
    if pg_available():
        rows += onboarding("postgresql", flows, concurrency, latency)
    return rows


__all__ = ["Database", "flow_env", "measure", "run"]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--latency", type=float, default=LATENCY)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    args = parser.parse_args()
    out: list[Row] = []
    for kind in ("sqlite", "postgresql"):
        if args.db in (kind, "both"):
            out += onboarding(kind, args.flows, args.concurrency, args.latency)
    print(render(out))
