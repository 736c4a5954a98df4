"""Running the HTTP server: uvicorn, plus the sandbox's one startup banner.

``pbf-headless serve --sandbox`` (what ``make run`` runs) prints one banner once the socket
listens: the base URL, the API docs, the demo page and an ``export`` line with the sandbox
API key (reused across restarts, see :mod:`app.callers.sandbox_keys`).
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from fastapi import FastAPI

from app.callers.sandbox_keys import SANDBOX_KEY_FILE, SandboxKey
from app.config import Settings

_WILDCARD_HOSTS = {"0.0.0.0", "::", ""}  # noqa: S104 - names, not a bind


def local_base_url(host: str, port: int) -> str:
    """The URL a browser on this machine uses to reach a server bound to ``host:port``."""
    if host in _WILDCARD_HOSTS:
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def sandbox_banner(settings: Settings, key: SandboxKey) -> str:
    """The text ``serve --sandbox`` prints once it listens."""
    base = settings.public_base_url.rstrip("/")
    key_file = settings.data_dir / SANDBOX_KEY_FILE
    how = (
        f"reused from {key_file}"
        if key.reused
        else f"new, stored in {key_file} (0600)"
        + (f"; {key.revoked} older sandbox key(s) revoked" if key.revoked else "")
    )
    lines = [
        "",
        "pbf-headless sandbox is up (simulated Fivetran and OAuth; nothing leaves this machine)",
        f"  API        {base}",
        f"  API docs   {base}/docs",
        f"  demo UI    {base}/sandbox/demo",
        f"  API key    admin, {how}",
        "",
        f"  export PBF_BASE={base} PBF_API_KEY={key.key}",
        "",
    ]
    return "\n".join(lines)


class _BannerServer(uvicorn.Server):
    """A uvicorn server that prints ``banner`` to stdout once its socket listens."""

    def __init__(self, config: uvicorn.Config, banner: str | None) -> None:
        super().__init__(config)
        self._banner = banner

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self._banner and not self.should_exit:
            sys.stdout.write(self._banner + "\n")
            sys.stdout.flush()


def run_server(
    app: FastAPI,
    *,
    host: str,
    port: int,
    log_config: dict[str, Any],
    access_log: bool,
    banner: str | None = None,
) -> None:
    """Serve ``app`` with uvicorn. Proxy headers stay off: ``request.client`` is the socket's
    peer, which the sandbox demo's loopback check (and the audit trail) rely on."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=log_config,
        access_log=access_log,
        proxy_headers=False,
    )
    _BannerServer(config, banner).run()
