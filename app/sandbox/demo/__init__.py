"""``/sandbox/demo``: an example of a company's own onboarding UI, built only on the public
``/v1`` API (plain HTML and JavaScript, no build step). Sandbox mode only, loopback only."""

from __future__ import annotations

from fastapi import FastAPI

from app.sandbox.demo.keys import DemoKeyHolder
from app.sandbox.demo.router import router


def mount_sandbox_demo(app: FastAPI) -> None:
    app.state.sandbox_demo_keys = DemoKeyHolder()
    app.include_router(router)
