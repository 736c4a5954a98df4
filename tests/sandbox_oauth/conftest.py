"""Fixtures for provider tests: the real app (sandbox mode) plus a flow harness."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.providers.flow import Harness


@pytest.fixture
def harness(app: FastAPI, client: httpx.AsyncClient) -> Harness:
    return Harness(app, client)
