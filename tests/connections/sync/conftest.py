"""Tests here run against the events app (:mod:`tests.fixtures.events_app`)."""

from tests.fixtures.events_app import app

__all__ = ["app"]
