"""The demo page's own API key: demo-scoped and kept in this process's memory only.

One key per server process, made on the first request of the demo page: scopes read and
write (no admin), restricted to end-users whose id starts with ``demo-``. Making it revokes
the demo keys of earlier runs (one active ``sandbox-demo`` key at a time). The plaintext is
never written anywhere; after a restart the page fetches the new one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.callers.sandbox_keys import replace_named_key, usable_caller

DEMO_KEY_NAME = "sandbox-demo"
DEMO_END_USER_PREFIX = "demo-"
DEMO_KEY_SCOPES = ["read", "write"]


@dataclass(frozen=True)
class DemoKey:
    key: str
    key_id: str
    scopes: list[str]
    end_user_prefix: str


class DemoKeyHolder:
    """Makes the demo key once per process and hands the same one out after that."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._current: DemoKey | None = None

    async def get(self, sessionmaker: async_sessionmaker[AsyncSession]) -> DemoKey:
        async with self._lock:
            current = self._current
            # Durable point: the key is committed before the page may use it.
            async with sessionmaker() as session, session.begin():
                if current is not None and await usable_caller(session, current.key):
                    return current
                row, key, _ = await replace_named_key(
                    session,
                    name=DEMO_KEY_NAME,
                    scopes=DEMO_KEY_SCOPES,
                    end_user_prefix=DEMO_END_USER_PREFIX,
                )
            self._current = DemoKey(
                key=key,
                key_id=row.id,
                scopes=list(row.scopes),
                end_user_prefix=DEMO_END_USER_PREFIX,
            )
            return self._current
