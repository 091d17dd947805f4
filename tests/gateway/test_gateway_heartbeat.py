"""Replica heartbeats: every gateway process reports the policy versions it runs in the database,
and the dashboard sees each replica pick up a saved version."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.exc import OperationalError

from audit.db import ensure_schema, make_engine
from dashboard import data
from gateway.heartbeat import Heartbeat
from policies.loader import load_policy
from tests.gateway_harness import running_gateway, write_config
from tests.upstream import SimulatorHandle

POLICY = 'name: beat\ninput:\n  - {check: deny_terms, terms: ["%s"], action: block}\n'


def _until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def _recent(url: str) -> list[data.Replica]:
    try:
        return data.replicas(make_engine(url), seen_since=datetime.now(UTC) - timedelta(seconds=15))
    except OperationalError:  # a fresh file: the gateway's audit sink creates the tables in the background
        return []


def test_heartbeat_upserts_its_row_and_removes_it_on_stop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    engine = make_engine(url)
    ensure_schema(engine)
    beat = Heartbeat(engine, lambda: {"p.yaml": {"name": "p", "version": "v1"}}, interval_s=0.1)
    assert beat.beat() and beat.beat()  # the second beat updates the same row
    [replica] = _recent(url)
    assert replica.replica_id == beat.replica_id and replica.pid == os.getpid()
    assert replica.runs("p") == "v1" and replica.runs("other") is None
    beat.stop()
    assert _recent(url) == []


def test_an_unreachable_database_costs_nothing(tmp_path: Path) -> None:
    beat = Heartbeat(make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}"), dict, interval_s=0.1)
    assert beat.beat() is False  # logged once, retried on the next beat
    beat.stop()


def test_two_replicas_report_the_version_they_run_after_a_reload(simulator: SimulatorHandle, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    config = write_config(tmp_path, simulator.base_url, policy_text=POLICY % "one", database_url=url)
    policy_file = tmp_path / "policy.yaml"
    with running_gateway(config), running_gateway(config):
        first = load_policy(policy_file).version
        assert _until(lambda: [r.runs("beat") for r in _recent(url)] == [first, first])
        tmp = tmp_path / ".policy.tmp"
        tmp.write_text(POLICY % "two")
        os.replace(tmp, policy_file)
        second = load_policy(policy_file).version
        started = time.monotonic()
        # each replica beats as soon as it has reloaded, not at its next interval
        assert _until(lambda: [r.runs("beat") for r in _recent(url)] == [second, second], timeout=3.0)
        assert time.monotonic() - started < 3.0
    assert _recent(url) == []  # a clean stop removes the rows
