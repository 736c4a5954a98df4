"""Lifespan hook of onboarding: remember the app state, finish work left behind."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack

from fastapi import FastAPI

from app.config import Settings
from app.errors import AppError

log = logging.getLogger("pbf.onboarding")

#: How long shutdown waits for the background resume before cancelling it (resuming is
#: idempotent: what a cancel cuts short is finished on the next start).
_STOP_GRACE_SECONDS = 5.0


async def start_onboarding(app: FastAPI, settings: Settings, stack: AsyncExitStack) -> None:
    """Register the app state for the contract functions and, in the background, resume
    unfinished work (``creating`` connections, offboardings in progress). Never blocks
    startup on Fivetran: failures are logged and left for the next run or the
    reconciliation worker."""
    from app.onboarding import connections

    connections._ACTIVE_STATE.append(app.state)
    stack.callback(_forget, app)
    task = asyncio.create_task(resume_pending_work(app), name="onboarding-resume")
    app.state.onboarding_resume_task = task

    async def _stop() -> None:
        # Let an in-flight resume finish before cancelling it: cancelled while the session
        # opens its database connection, aiosqlite's connector thread would still be working
        # after the event loop has closed ("Event loop is closed" in that thread).
        await asyncio.wait({task}, timeout=_STOP_GRACE_SECONDS)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    stack.push_async_callback(_stop)


def _forget(app: FastAPI) -> None:
    from app.onboarding import connections

    with contextlib.suppress(ValueError):
        connections._ACTIVE_STATE.remove(app.state)


async def resume_pending_work(app: FastAPI) -> tuple[int, int]:
    """Vault clear secrets of older rows, then finish ``creating`` connections and
    offboardings left in progress."""
    from app.onboarding.connections import resume_creating
    from app.onboarding.end_users import resume_offboarding
    from app.onboarding.secret_migration import vault_plaintext_secrets

    await asyncio.sleep(0)  # let the rest of the lifespan finish first
    if getattr(app.state, "fivetran", None) is None or getattr(app.state, "vault", None) is None:
        return (0, 0)
    created = offboarded = 0
    try:
        async with app.state.sessionmaker() as session:
            app.state.secrets_vaulted = await vault_plaintext_secrets(session, app.state)
            await session.commit()
        async with app.state.sessionmaker() as session:
            created = await resume_creating(session, app.state)
            await session.commit()
        async with app.state.sessionmaker() as session:
            offboarded = await resume_offboarding(session, app.state)
            await session.commit()
    except (AppError, OSError) as exc:
        log.warning("resuming onboarding work failed", extra={"error_type": type(exc).__name__})
    return created, offboarded
