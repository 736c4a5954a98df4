"""Schemathesis against the running app (a real ``pbf-headless serve`` process): every phase
(examples, coverage, fuzzing, stateful), ≥ 5,000 generated cases, no 5xx allowed.

Long: marked ``reliability`` (``make reliability``), not part of ``make test``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.app import TEST_DB
from tests.reliability import figures
from tests.reliability.processes import Server, base_env, cli, free_port

pytestmark = pytest.mark.reliability

MAX_EXAMPLES = os.environ.get("PBF_RELIABILITY_FUZZ_EXAMPLES", "110")


def test_schemathesis_all_phases_no_server_error(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = base_env(database_url, tmp_path / "var", port)
    cli(env, "migrate")
    key = cli(env, "api-keys", "create", "--name", "fuzz", "--scope", "admin").splitlines()[-1]
    server = Server(env, port, tmp_path / "server.log").start()
    try:
        st = Path(sys.executable).parent / "st"
        done = subprocess.run(
            [
                str(st),
                "run",
                f"{server.base}/openapi.json",
                "-H",
                f"Authorization: Bearer {key}",
                "--checks",
                "not_a_server_error",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                MAX_EXAMPLES,
                "--workers",
                "2",
                "--seed",
                "13",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,  # schemathesis keeps its cache in ./.schemathesis
        )
    finally:
        server.stop()
    out = done.stdout + done.stderr
    m = re.search(r"(\d+) generated, (\d+) passed", out)
    assert m, out[-3000:]
    generated, passed = int(m.group(1)), int(m.group(2))
    failed = re.search(r"(\d+) failed", out[out.find("Test cases:") :])
    server_errors = int(failed.group(1)) if failed else 0
    figures.add(
        f"schemathesis ({TEST_DB}, all phases)", generated, passed, **{"5xx": server_errors}
    )
    assert done.returncode == 0, out[-4000:]
    assert generated >= 5000, generated
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert '"status": 500' not in log
