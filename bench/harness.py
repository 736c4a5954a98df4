"""Shared machinery of the benchmarks: databases, real server processes, seeding, wrk.

Every figure is measured against real ``uvicorn`` processes on loopback (``pbf-headless
serve --sandbox`` and the bare floor app of :mod:`bench.floor_app`), on SQLite or on a
uniquely named PostgreSQL database that is dropped afterwards. Nothing here is imported by
the service.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN_DSN = os.environ.get("PBF_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------- databases


@dataclass
class Database:
    """One benchmark database: ``url`` for the service (async driver spelled by the app)."""

    kind: str  # "sqlite" | "postgresql"
    url: str
    data_dir: Path
    pg_name: str | None = None


@contextmanager
def database(kind: str) -> Iterator[Database]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"pbf-bench-{kind}-"))
    name = None
    try:
        if kind == "sqlite":
            url = f"sqlite+aiosqlite:///{data_dir / 'pbf.db'}"
        else:
            name = f"pbf_bench_{secrets.token_hex(4)}"
            asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
            url = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
            url = "postgresql+asyncpg://" + url.split("://", 1)[1]
        db = Database(kind, url, data_dir, name)
        env = service_env(db)
        subprocess.run(
            [PYTHON, "-m", "app.cli", "migrate"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        yield db
    finally:
        if name:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        shutil.rmtree(data_dir, ignore_errors=True)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_available() -> bool:
    try:
        asyncio.run(_pg_admin("SELECT 1"))
    except Exception:
        return False
    return True


def service_env(db: Database, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBF_")}
    env.pop("DATABASE_URL", None)
    env.update(
        PBF_MODE="sandbox",
        PBF_DATA_DIR=str(db.data_dir),
        DATABASE_URL=db.url,
        PBF_LOG_LEVEL="INFO",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


# ----------------------------------------------------------------------------------- seeding


@dataclass
class Seed:
    api_key: str
    connection_ids: list[str]
    end_user: str


async def _seed(db: Database, end_users: int, per_user: int) -> Seed:
    from app.callers.service import create_api_key
    from app.connections.models import Connection
    from app.db import create_engine, create_sessionmaker, import_all_models, new_id, utcnow
    from app.end_users.models import EndUser

    import_all_models()
    engine = create_engine(db.url)
    maker = create_sessionmaker(engine)
    ids: list[str] = []
    now = utcnow()
    try:
        async with maker() as session, session.begin():
            _, key = await create_api_key(session, name="bench", scopes=["admin"])
        batch = 1000
        for start in range(0, end_users, batch):
            async with maker() as session, session.begin():
                users = [
                    EndUser(
                        id=new_id("eu"),
                        external_id=f"bench-{i:06d}",
                        name=f"Bench customer {i}",
                        slug=f"bench_{i:06d}",
                        group_strategy="per_end_user",
                        fivetran_group_id=f"group_{i:06d}",
                        owns_group=True,
                        created_at=now,
                        updated_at=now,
                    )
                    for i in range(start, min(end_users, start + batch))
                ]
                session.add_all(users)
                await session.flush()  # no ORM relationship orders the inserts for us
                for eu in users:
                    i = int(eu.external_id.split("-")[1])
                    for j in range(per_user):
                        cid = new_id("con")
                        ids.append(cid)
                        session.add(
                            Connection(
                                id=cid,
                                end_user_id=eu.id,
                                service="google_analytics_4",
                                slot=j,
                                auth_method="oauth",
                                provider_key="google",
                                state="connected",
                                group_id=eu.fivetran_group_id,
                                schema_name=f"ga4_bench_{i:06d}_{j}",
                                fivetran_connection_id=f"ft_{i:06d}_{j}",
                                config={"timezone": "UTC", "property_id": "123456789"},
                                secret_fields=["access_token", "refresh_token"],
                                oauth_metadata={},
                                setup_state="connected",
                                sync_state="scheduled",
                                setup_tests=[{"title": "Validate credentials", "status": "PASSED"}],
                                paused=False,
                                sync_frequency=360,
                                created_at=now,
                                updated_at=now,
                            )
                        )
                await session.flush()
    finally:
        await engine.dispose()
    return Seed(key, ids, "bench-000000")


def seed(db: Database, end_users: int = 1, per_user: int = 1) -> Seed:
    """Insert ``end_users`` end-users with ``per_user`` connected connections each, and an
    admin API key (the rows a status read returns; no Fivetran call is involved)."""
    return asyncio.run(_seed(db, end_users, per_user))


# ----------------------------------------------------------------------------------- servers


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    children: list[int] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The serving process ids (the uvicorn workers when there are several)."""
        kids = [pid for pid in _children(self.proc.pid) if not _is_resource_tracker(pid)]
        return kids or [self.proc.pid]

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids())

    def rss_mb(self) -> float:
        return sum(rss_mb(pid) for pid in self.pids())


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _is_resource_tracker(pid: int) -> bool:
    try:
        return b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def server(argv: list[str], env: dict[str, str], port: int, health: str) -> Iterator[Server]:
    log_fd, log_name = tempfile.mkstemp(prefix="pbf-bench-server-", suffix=".log")
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log_fd, stderr=log_fd, start_new_session=True
    )
    os.close(log_fd)
    srv = Server(proc, port, Path(log_name))
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {srv.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(srv.base + health, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {srv.log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield srv
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        srv.log_path.unlink(missing_ok=True)


def counterparties_server(db: Database, api_port: int) -> Any:
    """``pbf-headless sandbox-counterparties`` (the simulated Fivetran and OAuth provider) in
    a process of its own, for the service that will listen on ``api_port``: its CPU then is
    not counted as the service's (B2). Persistence off, as for :func:`api_server`."""
    port = free_port()
    argv = [PYTHON, "-m", "app.cli", "sandbox-counterparties", "--port", str(port)]
    environ = service_env(
        db,
        PBF_PUBLIC_BASE_URL=f"http://127.0.0.1:{api_port}",
        PBF_SANDBOX__COUNTERPARTIES_URL=f"http://127.0.0.1:{port}",
        PBF_SANDBOX__STATE_FILE=str(db.data_dir / f"sandbox-state-{port}.json"),
        PBF_SANDBOX__PERSIST="false",
    )
    return server(argv, environ, port, "/healthz")


def api_server(
    db: Database,
    *,
    workers: int = 1,
    port: int | None = None,
    counterparties: Server | None = None,
    **env: str,
) -> Any:
    """``pbf-headless serve --sandbox`` on ``port`` (a free one by default); with
    ``counterparties`` it mounts neither sandbox app and talks to that process instead."""
    port = port or free_port()
    argv = [PYTHON, "-m", "app.cli", "serve", "--sandbox", "--port", str(port)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    if counterparties is not None:
        env = {"PBF_SANDBOX__COUNTERPARTIES_URL": counterparties.base, **env}
    environ = service_env(
        db,
        PBF_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        # every API process has its own simulator, so its own sandbox state file
        PBF_SANDBOX__STATE_FILE=str(db.data_dir / f"sandbox-state-{port}.json"),
        # The sandbox's restart bookkeeping (a JSON dump of the whole simulated Fivetran and
        # OAuth state before every state-changing answer, O(state) each time) is not part of
        # the service: without this it was half of B2's CPU per flow. Benchmarks need no
        # restart survival.
        PBF_SANDBOX__PERSIST="false",
        **env,
    )
    return server(argv, environ, port, "/healthz")


def floor_server(db: Database) -> Any:
    port = free_port()
    argv = [PYTHON, "-m", "bench.floor_app", "--port", str(port)]
    return server(argv, service_env(db), port, "/floor/none")


# --------------------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    requests: int
    #: requests per CPU-second of the server process(es) during the run (user + system)
    per_cpu_second: float = float("nan")


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * _UNIT[m.group(2)]


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    headers: dict[str, str],
    script: str | None = None,
    srv: Server | None = None,
) -> WrkResult:
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    if script:
        argv += ["-s", script]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    cpu0 = srv.cpu_seconds() if srv else 0.0
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    cpu = (srv.cpu_seconds() - cpu0) if srv else 0.0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    per_cpu = total / cpu if cpu > 0 else float("nan")
    return WrkResult(rps, p50, p99, int(bad.group(1)) if bad else 0, total, per_cpu)


def median_wrk(
    url: str, *, connections: int, seconds: float, runs: int, headers: dict[str, str]
) -> WrkResult:
    """The median of ``runs`` runs (by throughput; its latencies with it), after a warm-up."""
    wrk(url, connections=connections, seconds=1, headers=headers)
    return _median_result(
        [wrk(url, connections=connections, seconds=seconds, headers=headers) for _ in range(runs)]
    )


@dataclass
class Paired:
    floor: WrkResult
    figure: WrkResult
    #: median of the per-pair throughput ratios figure/floor
    ratio: float
    #: median of the per-pair ratios of requests per CPU-second (robust to machine load)
    cpu_ratio: float


def paired_wrk(
    floor: tuple[Server, str],
    figure: tuple[Server, str],
    *,
    connections: int,
    seconds: float,
    runs: int,
    headers: dict[str, str],
) -> Paired:
    """Floor and figure measured alternately (so both see the same machine load): the median
    runs and the medians of the per-pair ratios."""
    floor_srv, floor_url = floor
    srv, url = figure
    wrk(floor_url, connections=connections, seconds=1, headers={})
    wrk(url, connections=connections, seconds=1, headers=headers)
    floors, figures, ratios, cpu_ratios = [], [], [], []
    for _ in range(runs):
        f = wrk(floor_url, connections=connections, seconds=seconds, headers={}, srv=floor_srv)
        r = wrk(url, connections=connections, seconds=seconds, headers=headers, srv=srv)
        floors.append(f)
        figures.append(r)
        ratios.append(r.rps / f.rps if f.rps else float("nan"))
        cpu_ratios.append(r.per_cpu_second / f.per_cpu_second)
    return Paired(
        _median_result(floors), _median_result(figures), median(ratios), median(cpu_ratios)
    )


def _median_result(results: list[WrkResult]) -> WrkResult:
    ordered = sorted(results, key=lambda r: r.rps)
    mid = ordered[len(ordered) // 2]
    return WrkResult(
        mid.rps,
        mid.p50_ms,
        mid.p99_ms,
        sum(r.non_2xx for r in results),
        sum(r.requests for r in results),
        median([r.per_cpu_second for r in results]),
    )


def fivetran_request_count(base: str) -> int:
    r = httpx.get(f"{base}/sandbox/fivetran/_control/requests", timeout=30)
    r.raise_for_status()
    return len(r.json()["data"]["items"])


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "platform": sys.platform,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
        mem = Path("/proc/meminfo").read_text().splitlines()[0]
        info["memory"] = mem.split(":", 1)[1].strip()
    except OSError:
        pass
    if wrk_available():
        v = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        info["wrk"] = (v.stdout or v.stderr).splitlines()[0] if (v.stdout or v.stderr) else "wrk"
    return info


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
