"""The OpenAPI document as committed in ``openapi/openapi.json`` (deterministic text)."""

from __future__ import annotations

import json

from app.config import Settings
from app.main import create_app


def render_openapi() -> str:
    """The production-mode API (sandbox routes excluded), sorted keys, trailing newline."""
    settings = Settings(mode="sandbox")
    app = create_app(settings, include_sandbox=False)
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
