"""Here ``harness`` is the provider-level flow harness (:mod:`tests.fixtures.providers`)."""

from __future__ import annotations

import pytest

from tests.fixtures.providers import Harness


@pytest.fixture
def harness(provider_harness: Harness) -> Harness:
    return provider_harness
