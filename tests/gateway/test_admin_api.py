"""The admin API: keys and policy versions without file edits, each call an audit record.

One gateway on a real SQLite database; the multi-replica behaviour (PostgreSQL, Redis, three
processes) is in ``test_replicas.py``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway_harness import CLIENT_KEY, REVIEWER_KEY, RunningGateway, running_gateway, write_config
from tests.upstream import SimulatorHandle

ADMIN_KEY = "sk-test-admin-000001"
POLICY = """
name: admin-test
input:
  - {check: deny_terms, terms: [forbidden-word], action: block}
"""
STRICT = POLICY.replace("[forbidden-word]", "[forbidden-word, bananas]")


def with_admin(config: Path, extra_keys: str = "") -> Path:
    text = config.read_text().replace(
        "keys:\n", f"keys:\n  - {{key: {ADMIN_KEY}, tenant: ops, role: admin, id: admin-1}}\n{extra_keys}"
    )
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def gw(simulator: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    folder = tmp_path_factory.mktemp("admin")
    config = with_admin(
        write_config(folder, simulator.base_url, policy_text=POLICY, database_url="sqlite:///./admin.db")
    )
    with running_gateway(config) as running:
        yield running


def admin(gw: RunningGateway, method: str, path: str, key: str = ADMIN_KEY, **kw: Any) -> httpx.Response:
    return httpx.request(method, f"{gw.base_url}/admin{path}", headers={"authorization": f"Bearer {key}"}, **kw)


def chat(gw: RunningGateway, key: str, content: str = "hello") -> httpx.Response:
    return httpx.post(
        f"{gw.base_url}/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]},
    )


def db(gw: RunningGateway) -> sqlite3.Connection:
    path = gw.gateway.config.resolved_database_url().removeprefix("sqlite:///")
    return sqlite3.connect(path)


def test_created_key_works_is_stored_hashed_and_shown_once(gw: RunningGateway) -> None:
    r = admin(gw, "POST", "/keys", json={"tenant": "team-a", "id": "team-a-1", "rpm": 100, "note": "for CI"})
    assert r.status_code == 201, r.text
    body = r.json()
    secret = body["key"]
    assert secret.startswith("sk-warden-") and body["id"] == "team-a-1" and body["source"] == "database"
    assert chat(gw, secret).status_code == 200
    with db(gw) as conn:
        stored = conn.execute("SELECT key_sha256 FROM api_keys WHERE key_id = 'team-a-1'").fetchone()[0]
        dump = "\n".join(conn.iterdump())
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in dump
    listed = admin(gw, "GET", "/keys").json()["data"]
    mine = next(k for k in listed if k["id"] == "team-a-1")
    assert mine["tenant"] == "team-a" and mine["rpm"] == 100 and "key" not in mine
    assert secret not in str(listed) and stored not in str(listed)
    assert {k["id"] for k in listed if k["source"] == "config"} >= {"client-1", "admin-1"}


def test_revoked_key_stops_working(gw: RunningGateway) -> None:
    secret = admin(gw, "POST", "/keys", json={"tenant": "team-b"}).json()["key"]
    key_id = next(k["id"] for k in admin(gw, "GET", "/keys").json()["data"] if k["tenant"] == "team-b")
    assert chat(gw, secret).status_code == 200
    r = admin(gw, "DELETE", f"/keys/{key_id}")
    assert r.status_code == 200 and r.json()["revoked"] is True
    assert chat(gw, secret).status_code == 401
    assert admin(gw, "DELETE", "/keys/no-such-key").status_code == 404


def test_a_config_key_can_be_revoked_fleet_wide(simulator: SimulatorHandle, tmp_path: Path) -> None:
    config = with_admin(write_config(tmp_path, simulator.base_url, policy_text=POLICY, database_url="sqlite:///./a.db"))
    with running_gateway(config) as gw:
        assert chat(gw, CLIENT_KEY).status_code == 200
        assert admin(gw, "DELETE", "/keys/client-1").status_code == 200
        assert chat(gw, CLIENT_KEY).status_code == 401
        listed = admin(gw, "GET", "/keys").json()["data"]
        assert next(k for k in listed if k["id"] == "client-1")["revoked_at"] is not None
    # a restarted gateway (same config file, same database) still refuses it
    with running_gateway(config) as gw:
        gw.gateway.fleet.poll(gw.gateway.audit.engine or _wait_engine(gw))
        assert chat(gw, CLIENT_KEY).status_code == 401


def _wait_engine(gw: RunningGateway) -> Any:
    gw.gateway.audit.wait_started(10)  # type: ignore[attr-defined]
    return gw.gateway.audit.engine


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "tenant"),
        ({"tenant": "t", "role": "root"}, "role"),
        ({"tenant": "t", "rpm": 0}, "rpm"),
        ({"tenant": "t", "tpm": "many"}, "tpm"),
        ({"tenant": "t", "policy": "nope"}, "policy"),
        ({"tenant": "t", "id": "client-1"}, "id"),
        ({"tenant": "t", "secret": "x"}, "secret"),
    ],
)
def test_bad_key_requests_are_refused(gw: RunningGateway, body: dict[str, Any], param: str) -> None:
    r = admin(gw, "POST", "/keys", json=body)
    assert r.status_code in (400, 409), r.text
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize("key", [CLIENT_KEY, REVIEWER_KEY])
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/keys"), ("POST", "/keys"), ("DELETE", "/keys/client-1"), ("GET", "/policies")],
)
def test_admin_routes_need_the_admin_role(gw: RunningGateway, key: str, method: str, path: str) -> None:
    r = admin(gw, method, path, key=key, json={"tenant": "x"} if method == "POST" else None)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "insufficient_permissions"
    assert admin(gw, "GET", "/keys", key="sk-nobody-00000000").status_code == 401


def test_policy_versions_saved_listed_and_activated(gw: RunningGateway) -> None:
    listed = admin(gw, "GET", "/policies").json()["data"]
    policy = next(p for p in listed if p["name"] == "admin-test")
    original = policy["running_version"]
    assert chat(gw, CLIENT_KEY, "I like bananas").status_code == 200

    r = admin(gw, "POST", "/policies/admin-test/versions", json={"yaml": textwrap.dedent(STRICT), "activate": True})
    assert r.status_code == 201, r.text
    strict = r.json()["version"]
    assert r.json()["active"] is True
    assert chat(gw, CLIENT_KEY, "I like bananas").status_code == 400
    health = httpx.get(f"{gw.url}/health").json()
    assert any(p["version"] == strict for p in health["policies"])

    # the file's own version was never stored, so store it (not active), then roll back to it
    r = admin(gw, "POST", "/policies/admin-test/versions", json={"yaml": textwrap.dedent(POLICY)})
    assert r.status_code == 201 and r.json()["version"] == original and r.json()["active"] is False
    assert chat(gw, CLIENT_KEY, "I like bananas").status_code == 400
    r = admin(gw, "POST", "/policies/admin-test/activate", json={"version": original, "note": "roll back"})
    assert r.status_code == 200, r.text
    assert chat(gw, CLIENT_KEY, "I like bananas").status_code == 200

    listed = admin(gw, "GET", "/policies").json()["data"]
    policy = next(p for p in listed if p["name"] == "admin-test")
    assert policy["running_version"] == original and policy["activated_version"] == original
    assert {v["version"] for v in policy["versions"]} == {original, strict}


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/policies/admin-test/activate", {"version": "0" * 16}, 404, "version"),
        ("/policies/nope/activate", {"version": "0" * 16}, 404, "name"),
        ("/policies/admin-test/versions", {"yaml": "name: admin-test\ninput: 5\n"}, 400, "yaml"),
        ("/policies/admin-test/versions", {"yaml": "name: other\n"}, 400, "yaml"),
        ("/policies/admin-test/versions", {"yaml": 5}, 400, "yaml"),
    ],
)
def test_bad_policy_requests_are_refused(
    gw: RunningGateway, path: str, body: dict[str, Any], status: int, param: str
) -> None:
    r = admin(gw, "POST", path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


def test_every_admin_call_is_an_audit_record(gw: RunningGateway) -> None:
    admin(gw, "POST", "/keys", json={"tenant": "audited", "id": "audited-1"})
    admin(gw, "GET", "/keys", key=CLIENT_KEY)  # refused: recorded too
    admin(gw, "DELETE", "/keys/audited-1")
    gw.flush_audit()
    with db(gw) as conn:
        rows = conn.execute(
            "SELECT key_id, endpoint, http_status, steps FROM audit_requests WHERE endpoint LIKE '%/v1/admin/%' "
            "ORDER BY chain_id, seq"
        ).fetchall()
    actions = [(key_id, endpoint, status) for key_id, endpoint, status, _ in rows]
    assert ("admin-1", "POST /v1/admin/keys", 200) in actions
    assert ("client-1", "GET /v1/admin/keys", 403) in actions
    assert ("admin-1", "DELETE /v1/admin/keys/audited-1", 200) in actions
    created = next(steps for _, endpoint, _, steps in rows if '"audited-1"' in steps and "key.create" in steps)
    assert "sk-warden-" not in created
    from audit.db import make_engine
    from audit.read.verify import verify

    result = verify(make_engine(gw.gateway.config.resolved_database_url()))
    assert result.ok, result.problems


def test_cors_is_off_unless_configured(gw: RunningGateway, simulator: SimulatorHandle, tmp_path: Path) -> None:
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
    r = httpx.options(f"{gw.base_url}/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    r = chat(gw, CLIENT_KEY)
    assert "access-control-allow-origin" not in r.headers
    config = write_config(
        tmp_path,
        simulator.base_url,
        policy_text=POLICY,
        extra="audit: {enabled: false}\ncors: {allow_origins: ['https://app.example']}\n",
    )
    with running_gateway(config) as open_gw:
        r = httpx.options(f"{open_gw.base_url}/chat/completions", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = httpx.options(
            f"{open_gw.base_url}/chat/completions", headers={**preflight, "origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in r.headers


def test_tokens_per_minute_limit_answers_429_with_headers(simulator: SimulatorHandle, tmp_path: Path) -> None:
    key = "sk-test-tpm-0000001"
    config = write_config(tmp_path, simulator.base_url, policy_text=POLICY, extra="audit: {enabled: false}\n")
    entry = f"keys:\n  - {{key: {key}, tenant: t, id: tpm-1, tpm: 30}}\n"
    config.write_text(config.read_text().replace("keys:\n", entry))
    with running_gateway(config) as gw:
        first = chat(gw, key, "hello there " * 10)
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit-tokens"] == "30"
        assert "x-ratelimit-limit-requests" not in first.headers
        used = first.json()["usage"]["total_tokens"]
        assert used >= 30
        for _ in range(50):  # the spend is counted just after the answer: wait for it
            second = chat(gw, key)
            if second.status_code == 429:
                break
        assert second.status_code == 429
        assert second.json()["error"]["code"] == "rate_limit_exceeded" and "tokens" in second.json()["error"]["message"]
        assert int(second.headers["retry-after"]) >= 1
        assert second.headers["x-ratelimit-remaining-tokens"] == "0"


def test_cli_keys_and_policy_activation_on_the_database(gw: RunningGateway) -> None:
    source = gw.gateway.config.source
    assert source is not None

    def warden(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args, "--config", str(source)],
            capture_output=True,
            text=True,
            check=False,
        )

    made = warden("keys", "create", "--db", "--tenant", "cli-team", "--id", "cli-1", "--tpm", "5000")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    gw.gateway.fleet.poll(gw.gateway.audit.engine)
    assert chat(gw, secret).status_code == 200
    listed = warden("keys", "list", "--json")
    assert '"cli-1"' in listed.stdout and secret not in listed.stdout
    assert warden("keys", "revoke", "--db", "cli-1").returncode == 0
    gw.gateway.fleet.poll(gw.gateway.audit.engine)
    assert chat(gw, secret).status_code == 401
    assert warden("keys", "revoke", "--db", "no-such").returncode == 1
    version = admin(gw, "POST", "/policies/admin-test/versions", json={"yaml": textwrap.dedent(POLICY)}).json()
    versions = warden("policy", "versions", "admin-test")
    assert versions.returncode == 0 and version["version"] in versions.stdout
    activated = warden("policy", "activate", "admin-test", version["version"], "--note", "from the CLI")
    assert activated.returncode == 0, activated.stderr
    assert warden("policy", "activate", "admin-test", "0" * 16).returncode == 1
    with db(gw) as conn:
        recorded = conn.execute(
            "SELECT endpoint, steps FROM audit_requests WHERE endpoint LIKE 'warden %' ORDER BY started_at"
        ).fetchall()
    assert [e for e, _ in recorded] == ["warden key.create", "warden key.revoke", "warden policy.activate"]
    assert all(secret not in steps for _, steps in recorded) and '"cli-1"' in recorded[0][1]


def test_a_dashboard_save_is_activated_for_replicas_on_other_hosts(simulator: SimulatorHandle, tmp_path: Path) -> None:
    """The dashboard writes the file (replicas sharing it reload it) and records the version as
    activated, which replicas that do not share the file take from the database."""
    from audit.db import make_engine, upgrade
    from audit.fleet import active_versions
    from dashboard.policy_files import save

    here = write_config(tmp_path / "here", simulator.base_url, policy_text=POLICY, database_url="sqlite:///../fleet.db")
    there = write_config(
        tmp_path / "there", simulator.base_url, policy_text=POLICY, database_url="sqlite:///../fleet.db"
    )
    upgrade(f"sqlite:///{tmp_path / 'fleet.db'}")
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    with running_gateway(there) as gw:
        assert chat(gw, CLIENT_KEY, "I like bananas").status_code == 200
        result = save(
            engine, here.parent / "policy.yaml", textwrap.dedent(STRICT), user="alice", note="stricter", evaluation=None
        )
        assert active_versions(engine)["admin-test"].version_hash == result.version.version_hash
        gw.gateway.fleet.poll(gw.gateway.audit.engine or _wait_engine(gw))  # what its poller does each second
        assert chat(gw, CLIENT_KEY, "I like bananas").status_code == 400
