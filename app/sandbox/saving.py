"""Save-before-answer hook of the sandbox sub-apps (see :mod:`app.sandbox.persistence`).

Separate from the persistence itself so the sub-apps can import it without import cycles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from fastapi import FastAPI


class Saver(Protocol):
    def save(self) -> None: ...


def persistence_of(app: FastAPI) -> Callable[[], Saver | None]:
    """The persistence of ``app`` once its lifespan started it (None when not persisting)."""
    return lambda: getattr(app.state, "sandbox_persistence", None)


class SaveBeforeAnswer:
    """ASGI wrapper of a sandbox sub-app: after a state-changing request (not GET/HEAD/OPTIONS)
    the state is saved before the answer's first byte is sent."""

    def __init__(self, app: FastAPI, persistence: Callable[[], Saver | None]) -> None:
        self.app = app
        self._persistence = persistence

    @property
    def state(self) -> Any:  # the wrapped app's state (tests and helpers reach through)
        return self.app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return

        async def send_after_save(message: Any) -> None:
            if message["type"] == "http.response.start":
                persistence = self._persistence()
                if persistence is not None:
                    persistence.save()
            await send(message)

        await self.app(scope, receive, send_after_save)
