"""Every request leaves one audit record with its ordered steps, readable by reviewers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway_harness import CLIENT_KEY, REVIEWER_KEY, RunningGateway, running_gateway, write_config
from tests.upstream import SimulatorHandle

POLICY = """
name: audited
constrain:
  system_prompt: Be careful.
input:
  - {check: regex, patterns: ["ACME-\\\\d{4}"], entity: TICKET, action: redact}
stream:
  checks:
    - {check: regex, patterns: ["ACME-\\\\d{4}"], entity: TICKET, action: redact}
reasoning:
  - {check: regex, patterns: ["ACME-\\\\d{4}"], entity: TICKET, action: flag}
  - {check: step_verifier, action: flag}
audit:
  store_text: redacted
"""


@pytest.fixture(scope="module")
def gw(simulator: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    folder = tmp_path_factory.mktemp("audit")
    config = write_config(folder, simulator.base_url, policy_text=POLICY, database_url="sqlite:///./audit.db")
    with running_gateway(config) as running:
        yield running


def record(gw: RunningGateway, request_id: str) -> dict[str, object]:
    gw.flush_audit()
    r = httpx.get(f"{gw.base_url}/audit/requests/{request_id}", headers={"authorization": f"Bearer {REVIEWER_KEY}"})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_stream_with_reasoning_is_recorded_step_by_step(gw: RunningGateway, sim: SimulatorHandle) -> None:
    sim.script(
        match="discount",
        reasoning="Step 1: the price is 200.\nStep 2: 200 × 0.8 = 170, see ACME-1234.\nStep 3: so 170.",
        content="The price after the discount is 160, ticket ACME-1234.",
        chunking="char",
    )
    raw = gw.client().chat.completions.with_raw_response.create(
        model="sim-reasoner",
        stream=True,
        messages=[{"role": "user", "content": "What is 200 with a 20% discount? Ref ACME-9999"}],
    )
    request_id = raw.headers["x-warden-request-id"]
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "The price after the discount is 160, ticket <TICKET>."
    rec = record(gw, request_id)
    assert rec["request_id"] == request_id
    assert rec["input_text"] == "What is 200 with a 20% discount? Ref <TICKET>"
    leaks = [s for s in rec["inference_steps"] if "ACME-" in json.dumps(s)]  # type: ignore[union-attr]
    assert "ACME-" not in json.dumps(rec), leaks
    steps = rec["inference_steps"]
    assert isinstance(steps, list)
    stages = [s["stage"] for s in steps]
    assert stages.index("input") < stages.index("upstream") < stages.index("response"), stages
    assert stages[-1] == "response"
    reasoning = [s for s in steps if s["stage"] == "reasoning" and s["name"].startswith("step ")]
    assert [s["text"] for s in reasoning][:2] == ["Step 1: the price is 200.", "Step 2: 200 × 0.8 = 170, see <TICKET>."]
    verifier = [s for s in steps if s["name"] == "step_verifier" and s["result"] == "flag"]
    assert verifier, "the wrong multiplication in step 2 is flagged"
    stream_steps = [s for s in steps if s["stage"] == "stream"]
    assert stream_steps and stream_steps[0]["spans"][0]["entity_type"] == "TICKET"
    assert stream_steps[0]["spans"][0]["fingerprint"]
    assert rec["output_decision"]


def test_think_blocks_become_reasoning_steps(gw: RunningGateway, sim: SimulatorHandle) -> None:
    sim.script(match="think", reasoning="First idea.\nSecond idea.", reasoning_field="think", content="Done.")
    raw = gw.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "think about it"}]
    )
    rec = record(gw, raw.headers["x-warden-request-id"])
    texts = [s["text"] for s in rec["inference_steps"] if s["stage"] == "reasoning" and s["name"].startswith("step ")]  # type: ignore[union-attr,index]
    assert texts == ["First idea.", "Second idea."]


def test_same_value_has_same_fingerprint(gw: RunningGateway) -> None:
    ids = []
    for _ in range(2):
        raw = gw.client().chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "about ACME-4242"}]
        )
        ids.append(raw.headers["x-warden-request-id"])
    prints = []
    for rid in ids:
        steps = record(gw, rid)["inference_steps"]
        prints.append([sp["fingerprint"] for s in steps for sp in s["spans"] if s["stage"] == "input"])  # type: ignore[union-attr,index]
    assert prints[0] == prints[1] and prints[0][0]


def test_errors_and_blocks_are_recorded_too(gw: RunningGateway, sim: SimulatorHandle) -> None:
    sim.script(match="fail", fault="refuse_500")
    r = httpx.post(
        f"{gw.base_url}/chat/completions",
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "fail now"}]},
    )
    assert r.status_code == 502
    rec = record(gw, r.headers["x-warden-request-id"])
    assert rec["status"] == "upstream_error"


def test_unknown_request_id_is_404(gw: RunningGateway) -> None:
    r = httpx.get(f"{gw.base_url}/audit/requests/req_nope", headers={"authorization": f"Bearer {REVIEWER_KEY}"})
    assert r.status_code == 404


def test_live_feed_streams_steps(gw: RunningGateway, tmp_path: Path) -> None:
    events: list[dict[str, object]] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream(
            "GET", f"{gw.base_url}/audit/live", headers={"authorization": f"Bearer {REVIEWER_KEY}"}, timeout=10
        ) as r:
            for line in r.iter_lines():
                if line.startswith(":"):
                    ready.set()
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if events[-1].get("stage") == "response":
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(5)
    gw.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
    thread.join(10)
    assert [e["stage"] for e in events][:1] == ["input"]
    assert {e["stage"] for e in events} >= {"input", "upstream", "response"}


def test_health_reports_the_audit_writer_once_it_runs(gw: RunningGateway) -> None:
    gw.flush_audit()
    r = httpx.get(f"{gw.url}/health")
    assert r.status_code == 200
    assert r.json()["audit"] == {"state": "ready"}


@pytest.mark.postgres
def test_a_postgres_schema_behind_this_warden_is_reported_and_nothing_is_lost(
    simulator: SimulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import select

    from audit.db import make_engine, upgrade
    from audit.rows import REQUESTS
    from gateway.audit_sink import BackgroundAudit
    from tests.audit_db import postgres_schema

    monkeypatch.setattr(BackgroundAudit, "recheck_s", 0.2)

    with postgres_schema() as url:  # empty: PostgreSQL is never upgraded implicitly
        config = write_config(tmp_path, simulator.base_url, database_url=url)
        with running_gateway(config) as running:
            running.gateway.audit.wait_started(30)  # type: ignore[union-attr]
            health = httpx.get(f"{running.url}/health")
            assert health.status_code == 503
            assert health.json()["audit"]["state"] == "failed"
            assert "warden db upgrade" in health.json()["audit"]["error"]
            reviewer = {"authorization": f"Bearer {REVIEWER_KEY}"}
            lookup = httpx.get(f"{running.base_url}/audit/requests/req_any", headers=reviewer)
            assert lookup.status_code == 503 and lookup.json()["error"]["code"] == "audit_unavailable"
            # Requests are still answered; their records wait in the writer's spool.
            reply = running.client().chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello while the schema is old"}]
            )
            request_id = reply.headers["x-warden-request-id"]
            upgrade(url)  # the operator runs `warden db upgrade`
            engine = make_engine(url)
            try:
                deadline = time.monotonic() + 30
                found: list[object] = []
                while not found and time.monotonic() < deadline:
                    with engine.connect() as conn:
                        query = select(REQUESTS.c.request_id).where(REQUESTS.c.request_id == request_id)
                        found = list(conn.execute(query))
                    time.sleep(0.2)
                assert found, "the spooled record was not replayed after the upgrade"
                # And /health recovers by itself: the gateway looks at the database again.
                while httpx.get(f"{running.url}/health").status_code != 200 and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert httpx.get(f"{running.url}/health").json()["audit"] == {"state": "ready"}
            finally:
                engine.dispose()
