"""Here ``harness`` is the connect-flow harness (:func:`tests.fixtures.connect.flow_harness`)."""

from __future__ import annotations

import pytest

from tests.fixtures.connect import FlowHarness


@pytest.fixture
def harness(flow_harness: FlowHarness) -> FlowHarness:
    return flow_harness
