"""How processes other than the sandbox server reach the sandbox (sandbox mode only).

The simulator and the sandbox OAuth server live in the ``pbf-headless serve --sandbox``
process — or, with ``sandbox.counterparties_url`` set, in their own ``pbf-headless
sandbox-counterparties`` process (:mod:`app.sandbox.counterparties`) — which alone owns their
persisted state (:mod:`app.sandbox.persistence`). The worker and ``onboarding resume`` build
the app *without* mounting the sandbox, so their calls to ``sandbox_base_url``
(``/sandbox/fivetran``, ``/sandbox/oauth``) go over HTTP to that server: one simulator, never
a second in-memory copy that would take every connection for deleted.
"""

from __future__ import annotations

import httpx

from app.config import Settings

CONTROL_STATE = "/sandbox/fivetran/_control/state"


async def sandbox_server_reachable(settings: Settings, wait_seconds: float = 5.0) -> bool:
    """True when a sandbox server answers at ``sandbox_base_url``."""
    url = settings.sandbox_base_url + CONTROL_STATE
    try:
        async with httpx.AsyncClient(timeout=wait_seconds, follow_redirects=False) as http:
            response = await http.get(url)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def unreachable_message(settings: Settings) -> str:
    return (
        f"sandbox mode: no sandbox server answers at {settings.sandbox_base_url}; Fivetran and "
        f"OAuth calls fail until '{_server_command(settings)}' runs there (the simulator "
        "lives in that process)"
    )


def _server_command(settings: Settings) -> str:
    if settings.sandbox.counterparties_url:
        return "pbf-headless sandbox-counterparties"
    return "pbf-headless serve --sandbox"
