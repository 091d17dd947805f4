"""The `warden` command line on a database filled by real gateway requests."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.gateway_harness import CLIENT_KEY, running_gateway, write_config
from tests.upstream import SimulatorHandle

POLICY = """
name: cli
input:
  - {check: regex, patterns: ["ACME-\\\\d{4}"], entity: TICKET, action: redact}
  - {check: regex, name: banned, patterns: ["forbidden-word"], action: block}
"""


def warden(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, input=stdin, check=False
    )


@pytest.fixture(scope="module")
def filled(simulator: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    config = write_config(folder, simulator.base_url, policy_text=POLICY, database_url="sqlite:///./cli.db")
    with running_gateway(config) as gw:
        client = gw.client()
        for i in range(5):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"hi ACME-000{i}"}]
            )
        r = httpx.post(
            f"{gw.base_url}/chat/completions",
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "forbidden-word"}]},
        )
        assert r.status_code == 400
        gw.flush_audit()
    return config


def test_verify_passes_then_detects_an_edit(filled: Path, tmp_path: Path) -> None:
    ok = warden("audit", "verify", "--config", str(filled))
    assert ok.returncode == 0, ok.stderr
    assert "6 records" in ok.stdout
    # tamper with a copy of the database, as someone with database access could
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    (copy_dir / "warden.yaml").write_text(filled.read_text().replace("./cli.db", "./tampered.db"))
    src = sqlite3.connect(filled.parent / "cli.db")
    dst = sqlite3.connect(copy_dir / "tampered.db")
    src.backup(dst)
    src.close()
    dst.execute("UPDATE audit_requests SET verdict = 'pass' WHERE verdict = 'block'")
    dst.commit()
    dst.close()
    bad = warden("audit", "verify", "--config", str(copy_dir / "warden.yaml"))
    assert bad.returncode == 1
    assert "first bad record req_" in bad.stderr


def test_export_jsonl_and_csv(filled: Path, tmp_path: Path) -> None:
    out = warden("audit", "export", "--config", str(filled), "--format", "jsonl")
    assert out.returncode == 0, out.stderr
    docs = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(docs) == 6
    assert all({"request_id", "input_text", "inference_steps", "output_decision"} <= d.keys() for d in docs)
    assert not any("ACME-0" in json.dumps(d) for d in docs)
    blocked = warden("audit", "export", "--config", str(filled), "--verdict", "block")
    assert len(blocked.stdout.splitlines()) == 1
    csv_file = tmp_path / "out.csv"
    done = warden("audit", "export", "--config", str(filled), "--format", "csv", "-o", str(csv_file))
    assert done.returncode == 0
    assert len(csv_file.read_text().splitlines()) >= 7


def test_keys_create_and_revoke(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/v1")
    made = warden("keys", "create", "--config", str(config), "--tenant", "t2", "--role", "reviewer", "--id", "k2")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("sk-warden-")
    text = config.read_text()
    assert "key_sha256" in text and key not in text
    from gateway.auth import KeyStore
    from gateway.config import load_config

    principal = KeyStore(load_config(config)).authenticate(f"Bearer {key}")
    assert principal.tenant == "t2" and principal.role == "reviewer"
    assert warden("keys", "revoke", "k2", "--config", str(config)).returncode == 0
    assert "k2" not in config.read_text()
    assert warden("keys", "revoke", "k2", "--config", str(config)).returncode == 1


def test_db_upgrade_on_a_new_sqlite_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/v1", database_url="sqlite:///./fresh.db")
    done = warden("db", "upgrade", "--config", str(config))
    assert done.returncode == 0, done.stderr
    tables = {r[0] for r in sqlite3.connect(tmp_path / "fresh.db").execute("SELECT name FROM sqlite_master")}
    assert "audit_requests" in tables


def test_serve_with_a_bad_config_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list: []\nkeys: []\n")
    done = warden("serve", "--config", str(bad))
    assert done.returncode == 2
    assert f"{bad}:1: model_list" in done.stderr


def test_a_created_key_works_on_a_running_gateway(simulator: SimulatorHandle, tmp_path: Path) -> None:
    import time

    config = write_config(tmp_path, simulator.base_url, extra="audit: {enabled: false}\n")
    with running_gateway(config) as gw:
        made = warden("keys", "create", "--config", str(config), "--tenant", "late", "--id", "late-1")
        key = made.stdout.strip()
        deadline = time.monotonic() + 3
        status = 401
        while time.monotonic() < deadline and status == 401:
            status = httpx.get(f"{gw.base_url}/models", headers={"authorization": f"Bearer {key}"}).status_code
            time.sleep(0.1)
        assert status == 200
        assert warden("keys", "revoke", "late-1", "--config", str(config)).returncode == 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and status == 200:
            status = httpx.get(f"{gw.base_url}/models", headers={"authorization": f"Bearer {key}"}).status_code
            time.sleep(0.1)
        assert status == 401
