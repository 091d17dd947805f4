"""Three ``warden serve`` processes on one PostgreSQL and one Redis, as a fleet runs them.

* a key created or revoked through the admin API on one replica works, or stops working, on
  every replica within 5 s (replicas poll the database);
* a policy version, edited in the shared file or activated through the admin API once, is in
  force on every replica within 5 s;
* per-key limits on requests *and* tokens per minute hold across the replicas (Redis), with
  429, ``retry-after`` and ``x-ratelimit-*`` headers;
* after concurrent load every replica's audit chain verifies;
* SIGKILL of a replica mid-load, while its database link is down so its records sit in its
  spool, loses no acknowledged record: the restarted replica replays the spool. That replica
  runs with ``audit.ack: durable``, so every answer a client received counts; the others
  answer at once (``queued``).

PostgreSQL is the shared server (a fresh schema per run), Redis is database 14. The fourth
replica's database link runs through a TCP proxy this test can cut.
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from audit.db import make_engine, upgrade
from audit.read.verify import verify
from tests.audit_db import postgres_schema
from tests.gateway.test_ratelimit import need_redis
from tests.gateway_harness import free_port
from tests.upstream import SimulatorHandle

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

REDIS_URL = "redis://127.0.0.1:6379/14"
AUDIT_KEY = "replica-test-audit-key-0123456789"
ADMIN_KEY = "sk-replica-admin-0001"
CLIENT_KEY = "sk-replica-client-001"
WITHIN_S = 5.0
POLICY = """
name: fleet
input:
  - {check: deny_terms, terms: [forbidden-word], action: block}
"""


class CuttableProxy:
    """A TCP forwarder to PostgreSQL that the test can cut (close every connection and
    refuse new ones) and restore: one replica's database outage, nobody else's."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._open = True
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                if not self._open:
                    client.close()
                    continue
                try:
                    upstream = socket.create_connection(self._target, timeout=5)
                except OSError:
                    client.close()
                    continue
                upstream.settimeout(None)
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self._lock:
            self._open = False
            for s in self._socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._socks.clear()

    def restore(self) -> None:
        with self._lock:
            self._open = True

    def close(self) -> None:
        self.cut()
        self._server.close()


@dataclass
class Replica:
    name: str
    config: Path
    database_url: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "WARDEN_DATABASE_URL": self.database_url, "WARDEN_AUDIT_KEY": AUDIT_KEY}
        log = (self.config.parent.parent / "logs" / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config), "--port", str(self.port),
             "--log-level", "warning"],
            env=env, stdout=log, stderr=log,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, f"{self.name} exited"
            try:
                health = httpx.get(f"{self.url}/health", timeout=1)
                # ready: answering, and its audit writer is connected (records go to the
                # database or its spool, not to memory)
                if health.status_code == 200 and health.json()["audit"]["state"] == "ready":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not become healthy")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Fleet:
    replicas: list[Replica]
    database_url: str
    policy: Path
    proxy: CuttableProxy
    engine: Any


@pytest.fixture(scope="module")
def fleet(simulator: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    need_redis()
    folder = tmp_path_factory.mktemp("replicas")
    (folder / "logs").mkdir()
    (folder / "policies").mkdir()  # watched: nothing else may churn in it
    policy = folder / "policies" / "policy.yaml"
    policy.write_text(textwrap.dedent(POLICY), encoding="utf-8")
    with postgres_schema() as url:
        upgrade(url)
        pg = make_url(url)
        proxy = CuttableProxy((pg.host or "127.0.0.1", pg.port or 5432))
        proxied = pg.set(port=proxy.port).render_as_string(hide_password=False)
        replicas = []
        for i in range(3):
            sub = folder / f"r{i}"
            sub.mkdir()
            config = sub / "warden.yaml"
            config.write_text(
                textwrap.dedent(
                    f"""\
                    model_list:
                      - model_name: gpt-4o-mini
                        litellm_params: {{model: openai/gpt-4o-mini, api_base: "{simulator.base_url}", api_key: sk-sim}}
                    policy: {policy}
                    redis_url: {REDIS_URL}
                    fleet: {{poll_s: 1.0}}
                    upstream: {{num_retries: 0}}
                    audit: {{spool_dir: {sub / "spool"}, ack: {"durable" if i == 2 else "queued"}}}
                    keys:
                      - {{key: {ADMIN_KEY}, tenant: ops, role: admin, id: admin}}
                      - {{key: {CLIENT_KEY}, tenant: acme, id: client}}
                    """
                ),
                encoding="utf-8",
            )
            replicas.append(Replica(f"r{i}", config, proxied if i == 2 else url))
        for r in replicas:
            r.start()
        engine = make_engine(url)
        try:
            for r in replicas:
                r.wait_ready()
            yield Fleet(replicas, url, policy, proxy, engine)
        finally:
            for r in replicas:
                r.stop()
            proxy.close()
            engine.dispose()


def ask(replica: Replica, key: str, content: str = "hello", **kw: Any) -> httpx.Response:
    return httpx.post(
        f"{replica.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **kw},
        timeout=30,
    )


def until_everywhere(fleet: Fleet, holds: Callable[[Replica], bool], what: str) -> float:
    """Seconds until ``holds`` is true on every replica; fails past WITHIN_S."""
    started = time.monotonic()
    pending = list(fleet.replicas)
    while pending:
        pending = [r for r in pending if not holds(r)]
        if pending and time.monotonic() - started > WITHIN_S:
            pytest.fail(f"{what}: not on {[r.name for r in pending]} after {WITHIN_S} s")
        if pending:
            time.sleep(0.1)
    return time.monotonic() - started


def test_keys_made_and_revoked_on_one_replica_hold_on_all(fleet: Fleet) -> None:
    made = httpx.post(
        f"{fleet.replicas[0].url}/v1/admin/keys",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        json={"tenant": "fleet-team", "id": "fleet-" + secrets.token_hex(3)},
    )
    assert made.status_code == 201, made.text
    secret, key_id = made.json()["key"], made.json()["id"]
    until_everywhere(fleet, lambda r: ask(r, secret).status_code == 200, "new key accepted")
    revoked = httpx.delete(
        f"{fleet.replicas[1].url}/v1/admin/keys/{key_id}", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert revoked.status_code == 200
    until_everywhere(fleet, lambda r: ask(r, secret).status_code == 401, "revoked key refused")


def test_a_policy_version_saved_once_is_in_force_everywhere(fleet: Fleet) -> None:
    original = fleet.policy.read_text()
    assert all(ask(r, CLIENT_KEY, "I like bananas").status_code == 200 for r in fleet.replicas)
    # saved in the file
    fleet.policy.write_text(original.replace("[forbidden-word]", "[forbidden-word, bananas]"))
    until_everywhere(fleet, lambda r: ask(r, CLIENT_KEY, "I like bananas").status_code == 400, "file edit")
    # the file's first text, stored and activated through the admin API of one replica
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    saved = httpx.post(
        f"{fleet.replicas[2].url}/v1/admin/policies/fleet/versions",
        headers=admin,
        json={"yaml": original, "activate": True, "note": "back to the first text"},
    )
    assert saved.status_code == 201, saved.text
    version = saved.json()["version"]

    def runs(r: Replica) -> bool:
        return any(p["version"] == version for p in httpx.get(f"{r.url}/health").json()["policies"])

    until_everywhere(fleet, runs, "activated version")
    assert all(ask(r, CLIENT_KEY, "I like bananas").status_code == 200 for r in fleet.replicas)


def _clear_of_minute_boundary(margin_s: float = 8.0) -> None:
    # The sliding window's previous minute starts at zero for a new key: a boundary crossed
    # mid-test would hand out a second budget.
    into = time.time() % 60
    if into > 60 - margin_s:
        time.sleep(60 - into + 0.5)


def _config_with_key(fleet: Fleet, entry: str) -> None:
    for r in fleet.replicas:
        text_ = r.config.read_text().replace("keys:\n", f"keys:\n  - {entry}\n")
        r.config.write_text(text_)


def test_requests_per_minute_hold_across_replicas(fleet: Fleet) -> None:
    key = "sk-rpm-" + secrets.token_hex(8)
    _config_with_key(fleet, f"{{key: {key}, tenant: rl, id: rpm-{key[-6:]}, rpm: 6}}")
    until_everywhere(fleet, lambda r: ask(r, "sk-replica-client-001").status_code == 200, "warm")
    time.sleep(1.5)  # the config watcher's reload
    _clear_of_minute_boundary()
    answers = [ask(fleet.replicas[i % 3], key) for i in range(12)]
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 6 and codes.count(429) == 6, codes
    ok, refused = answers[0], next(a for a in answers if a.status_code == 429)
    assert ok.headers["x-ratelimit-limit-requests"] == "6"
    assert int(ok.headers["x-ratelimit-remaining-requests"]) == 5
    assert ok.headers["x-ratelimit-reset-requests"].endswith("s")
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"


def test_tokens_per_minute_hold_across_replicas(fleet: Fleet) -> None:
    made = httpx.post(
        f"{fleet.replicas[0].url}/v1/admin/keys",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        json={"tenant": "tpm-team", "tpm": 200},
    )
    secret = made.json()["key"]
    until_everywhere(fleet, lambda r: ask(r, secret, "hi", max_tokens=1).status_code == 200, "new key")
    _clear_of_minute_boundary()
    spent, refused = 0, None
    for i in range(60):
        r = ask(fleet.replicas[i % 3], secret, "tell me something " * 5)
        if r.status_code == 429:
            refused = r
            break
        assert r.status_code == 200
        spent += r.json()["usage"]["total_tokens"]
    assert refused is not None, "the token budget was never enforced"
    assert spent >= 200 - 40  # refused only once (about) the budget was used, give or take one answer
    assert "tokens" in refused.json()["error"]["message"]
    assert refused.headers["x-ratelimit-limit-tokens"] == "200"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert int(refused.headers["retry-after"]) >= 1
    # every replica refuses the key now
    assert all(ask(r, secret).status_code == 429 for r in fleet.replicas)


def _load(replicas: list[Replica], n: int, stop: threading.Event | None = None) -> list[tuple[str, float]]:
    """n requests per replica from 8 threads, streamed and not: (request id, time acknowledged)."""
    jobs = [(replicas[i % len(replicas)], i) for i in range(n * len(replicas))]
    acked: list[tuple[str, float]] = []

    def one(job: tuple[Replica, int]) -> None:
        replica, i = job
        if stop is not None and stop.is_set():
            return
        try:
            with httpx.stream(
                "POST",
                f"{replica.url}/v1/chat/completions",
                headers={"authorization": f"Bearer {CLIENT_KEY}"},
                json={
                    "model": "gpt-4o-mini",
                    "stream": i % 2 == 0,
                    "messages": [{"role": "user", "content": f"request {i}: write me a short line"}],
                },
                timeout=30,
            ) as r:
                body = r.read()
                if r.status_code == 200 and (i % 2 or b"[DONE]" in body):
                    acked.append((r.headers["x-warden-request-id"], time.monotonic()))
        except httpx.HTTPError:
            pass  # a request to a replica that was killed: never acknowledged

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, jobs))
    return acked


def _stored(fleet: Fleet, ids: set[str]) -> set[str]:
    with fleet.engine.connect() as conn:
        rows = conn.execute(text("SELECT request_id FROM audit_requests")).scalars()
        return ids & set(rows)


def _wait_stored(fleet: Fleet, ids: set[str], timeout: float = 30.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while (found := _stored(fleet, ids)) != ids and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def _verify(fleet: Fleet) -> Any:
    previous = os.environ.get("WARDEN_AUDIT_KEY")
    os.environ["WARDEN_AUDIT_KEY"] = AUDIT_KEY
    try:
        return verify(fleet.engine)
    finally:
        if previous is None:
            del os.environ["WARDEN_AUDIT_KEY"]
        else:
            os.environ["WARDEN_AUDIT_KEY"] = previous


def test_chains_verify_after_concurrent_load(fleet: Fleet) -> None:
    acked = {rid for rid, _ in _load(fleet.replicas, 24)}
    assert len(acked) == 72
    assert _wait_stored(fleet, acked) == acked
    result = _verify(fleet)
    assert result.ok, result.problems
    with fleet.engine.connect() as conn:
        chains = conn.execute(
            text("SELECT count(DISTINCT chain_id) FROM audit_requests WHERE request_id = ANY(:ids)"),
            {"ids": list(acked)},
        ).scalar_one()
    assert chains == 3  # one chain per replica, none shared


def test_sigkill_mid_load_loses_no_acknowledged_record(fleet: Fleet) -> None:
    victim = fleet.replicas[2]
    fleet.proxy.cut()  # its database is gone: its records go to its fsynced spool
    stop = threading.Event()
    result: list[list[tuple[str, float]]] = []
    loader = threading.Thread(target=lambda: result.append(_load([victim], 400, stop)))
    loader.start()
    time.sleep(3.0)
    killed_at = time.monotonic()
    victim.kill()  # mid-load: requests in flight fail, and are not acknowledged
    stop.set()
    loader.join(60)
    acked = result[0]
    spool = victim.config.parent / "spool"
    spooled = sum(p.stat().st_size for p in spool.glob("spool-*.jsonl"))
    assert spooled > 0, "the victim's records never reached its spool"
    assert len(acked) >= 10
    fleet.proxy.restore()
    victim.start()  # same config, same spool folder: the dead writer's spool is taken over
    victim.wait_ready()
    every = {rid for rid, _ in acked}
    assert _wait_stored(fleet, every) == every  # each answer a client got, the last ones too
    last = {rid for rid, at in acked if at >= killed_at - 0.5}
    result_ = _verify(fleet)
    assert result_.ok, result_.problems
    print(f"acknowledged {len(acked)} (of which {len(last)} in the last 0.5 s before SIGKILL): all stored")
