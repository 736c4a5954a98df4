"""The company's outbound endpoints, as configured in ``EventsSettings.endpoints``."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings
from app.events.kinds import EVENT_KINDS


@dataclass(frozen=True)
class Endpoint:
    """One configured endpoint. ``secrets`` = (current, previous?) — never leave the process."""

    id: str
    url: str
    secrets: tuple[str, ...]
    events: frozenset[str] | None

    def wants(self, kind: str) -> bool:
        return self.events is None or kind in self.events

    def __repr__(self) -> str:  # secrets stay out of logs and tracebacks
        return f"Endpoint(id={self.id!r}, url={self.url!r}, events={self.events!r})"


def configured_endpoints(settings: Settings) -> dict[str, Endpoint]:
    """Endpoints by id; unknown event kinds in a filter raise ``ValueError`` (fail fast)."""
    out: dict[str, Endpoint] = {}
    for cfg in settings.events.endpoints:
        if cfg.id in out:
            raise ValueError(f"duplicate event endpoint id {cfg.id!r}")
        events = None
        if cfg.events is not None:
            unknown = sorted(set(cfg.events) - set(EVENT_KINDS))
            if unknown:
                raise ValueError(f"event endpoint {cfg.id!r}: unknown event kinds {unknown}")
            events = frozenset(cfg.events)
        out[cfg.id] = Endpoint(
            id=cfg.id,
            url=cfg.url,
            secrets=tuple(s.get_secret_value() for s in cfg.secrets),
            events=events,
        )
    return out
