"""A running gateway publishes signed chain heads (at its interval and at shutdown) and sends its
policy's alerts; `warden audit verify --config` then holds the database to those heads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from audit.db import make_engine
from audit.read.anchors import generate_key, load_public_key, read_anchors
from tests.audit.test_audit_alerts import SECRET, Receiver
from tests.audit.test_audit_anchors import cut_newest
from tests.gateway_harness import CLIENT_KEY, running_gateway, write_config
from tests.upstream import SimulatorHandle

POLICY = """
name: alerting
input:
  - {check: regex, name: banned, patterns: ["forbidden-word"], action: block}
alerts:
  webhook_url: "{url}"
  batch_s: 0.2
  rules: [{on: block}]
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WARDEN_DATABASE_URL", "WARDEN_AUDIT_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, env=env, check=False
    )


def test_a_gateway_anchors_its_heads_and_alerts_on_blocks(
    simulator: SimulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_ALERT_SECRET", SECRET)
    monkeypatch.delenv("WARDEN_AUDIT_KEY", raising=False)
    receiver = Receiver()
    public = generate_key(tmp_path / "keys" / "anchor.pem")
    extra = f"""
    audit:
      anchors: {{dir: anchors, interval_s: 0.3, key_file: keys/anchor.pem, public_key: "{public}"}}
    """
    config = write_config(tmp_path, simulator.base_url, policy_text=POLICY.replace("{url}", receiver.url), extra=extra)
    with running_gateway(config) as gw:
        client = gw.client()
        for i in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"hi {i}"}])
        r = httpx.post(
            f"{gw.base_url}/chat/completions",
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "forbidden-word"}]},
        )
        assert r.status_code == 400
        gw.flush_audit()
        chain_id = gw.gateway.audit._writer.requests_chain.chain_id  # type: ignore[union-attr]
    # shutdown published the final head: all four records are covered
    found = read_anchors(str(tmp_path / "anchors"), load_public_key(public))
    assert max(a.seq for a in found.anchors if a.chain_id == chain_id) == 4
    alerts = receiver.alerts()
    receiver.server.shutdown()
    (alert,) = alerts
    assert alert["rule"] == "block" and "banned" in alert["checks"]  # type: ignore[operator]

    ok = _cli("audit", "verify", "--config", str(config))
    assert ok.returncode == 0, ok.stderr
    assert "anchors: " in ok.stdout and ": ok" in ok.stdout
    published = _cli("audit", "anchor", "--config", str(config))
    assert published.returncode == 0, published.stderr
    assert "1 chain heads published" in published.stdout  # a new publisher signs each head once
    retention = _cli("audit", "retention", "--config", str(config))
    assert retention.returncode == 2 and "no audit.retention_days" in retention.stderr
    engine = make_engine(f"sqlite:///{tmp_path / 'warden.db'}")
    cut_newest(engine, chain_id)
    engine.dispose()
    bad = _cli("audit", "verify", "--config", str(config))
    assert bad.returncode == 1
    assert f"chain {chain_id}: records seq 4..4 are missing" in bad.stderr


def test_an_unreadable_anchor_key_fails_health_but_records_are_still_written(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    extra = """
    audit:
      anchors: {dir: anchors, key_file: keys/missing.pem}
    """
    config = write_config(tmp_path, simulator.base_url, extra=extra)
    with running_gateway(config) as gw:
        gw.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        gw.flush_audit()
        health = httpx.get(f"{gw.url}/health")
        assert health.status_code == 503
        assert "missing.pem" in health.json()["audit"]["error"]
    engine = make_engine(f"sqlite:///{tmp_path / 'warden.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_requests")).scalar_one() == 1
    engine.dispose()
