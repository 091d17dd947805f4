"""``benchmarks/soak.py`` runs end to end for a few seconds and reports what it promises.

Behaviour only (the report's sections and the JSON's fields); no figure is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.audit_db import require_postgres
from tests.gateway.test_ratelimit import need_redis

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def test_soak_reports_errors_latency_rss_and_audit_lag(tmp_path: Path) -> None:
    require_postgres()
    need_redis()
    output = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", "--seconds", "6", "--clients", "4", "--warmup", "1",
         "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "== soak: 3 replicas, 4 clients" in done.stdout
    assert "audit lag (answer -> committed" in done.stdout and "== goals:" in done.stdout
    summary = json.loads(output.read_text())
    assert summary["requests"] > 0 and summary["errors"] == {}
    assert set(summary["rss_mib"]) == {"replica-0", "replica-1", "replica-2"}
    assert summary["audit_lag_ms"]["samples"] >= 0 and summary["audit_lag_ms"]["never_seen"] == 0
