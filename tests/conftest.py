"""Shared fixtures: the simulator upstream (one per session) and gateways built on it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("WARDEN_AUDIT_KEY", "test-audit-key-not-secret")

from tests.upstream import SimulatorHandle, running_simulator


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorHandle]:
    with running_simulator() as sim:
        yield sim


@pytest.fixture
def sim(simulator: SimulatorHandle) -> Iterator[SimulatorHandle]:
    """The session's simulator, with scripts and counters cleared for this test."""
    simulator.clear()
    yield simulator
    simulator.clear()
