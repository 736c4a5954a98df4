"""Events settings: production refuses unsafe endpoints; endpoint filters are checked."""

from __future__ import annotations

import pytest

from app.config import Settings, production_problems
from app.events.receivers import configured_endpoints


@pytest.mark.db_independent
def test_production_refuses_plain_http_and_short_secrets() -> None:
    settings = Settings(
        mode="production",
        events={
            "endpoints": [
                {"id": "a", "url": "http://hooks.example.com/x", "secrets": ["short"]},
                {"id": "b", "url": "https://hooks.example.com/y", "secrets": ["x" * 32]},
            ]
        },
    )
    problems = production_problems(settings)
    assert any("'a' needs an https:// url" in p for p in problems)
    assert any("'a': signing secrets need 16+" in p for p in problems)
    assert not any("'b'" in p for p in problems)


def test_endpoint_configuration_is_checked(settings_factory) -> None:
    ok = settings_factory(
        events={
            "endpoints": [
                {"id": "a", "url": "https://x", "secrets": ["s1", "s0"], "events": None},
                {"id": "b", "url": "https://y", "secrets": ["s"], "events": ["connection.broken"]},
            ]
        }
    )
    endpoints = configured_endpoints(ok)
    assert endpoints["a"].secrets == ("s1", "s0") and endpoints["a"].wants("connection.created")
    assert not endpoints["b"].wants("connection.created")
    assert "s1" not in repr(endpoints["a"])
    bad_kind = settings_factory(
        events={"endpoints": [{"id": "a", "url": "https://x", "secrets": ["s"], "events": ["x"]}]}
    )
    with pytest.raises(ValueError, match="unknown event kinds"):
        configured_endpoints(bad_kind)
    twice = settings_factory(
        events={
            "endpoints": [
                {"id": "a", "url": "https://x", "secrets": ["s"]},
                {"id": "a", "url": "https://y", "secrets": ["s"]},
            ]
        }
    )
    with pytest.raises(ValueError, match="duplicate"):
        configured_endpoints(twice)
    with pytest.raises(ValueError):
        settings_factory(events={"endpoints": [{"id": "a", "url": "https://x", "secrets": []}]})
