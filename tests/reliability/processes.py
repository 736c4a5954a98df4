"""Real processes for the process-level scenarios: ``pbf-headless serve --sandbox`` (the
service) and ``pbf-headless sandbox-counterparties`` (the simulated Fivetran and OAuth
provider), each on a free loopback port with its own environment, started, waited for, and
SIGKILLed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

EXE = str(Path(sys.executable).parent / "pbf-headless")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(database_url: str, data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PBF_", "DATABASE_URL"))}
    env.update(
        PBF_MODE="sandbox",
        PBF_DATABASE_URL=database_url,
        PBF_DATA_DIR=str(data_dir),
        PBF_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        PBF_RATE_LIMIT__PER_IP="1000000/minute",
        PBF_RATE_LIMIT__PER_SESSION="1000000/minute",
        PBF_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [EXE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=True
    )
    return done.stdout


class Server:
    """One ``pbf-headless serve`` process (output to a file: a full pipe would block it)."""

    def __init__(
        self, env: dict[str, str], port: int, log: Path, command: tuple[str, ...] = ("serve",)
    ) -> None:
        self.env, self.port, self.log_path, self.command = env, port, log, command
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        log = self.log_path.open("ab")
        sandbox = ("--sandbox",) if self.command == ("serve",) else ()
        self.proc = subprocess.Popen(
            [EXE, *self.command, *sandbox, "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180  # a loaded 2-core machine starts slowly
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no rollback."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
