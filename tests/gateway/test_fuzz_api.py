"""Schemathesis against the gateway's own OpenAPI document (``/openapi.json``).

Every operation gets valid and invalid bodies, paths and headers generated from the schema
(the same pydantic models the routes validate with). For each case: an answer within the
timeout (no hang), no 5xx at all (the documented 502/503/504 need a failing upstream or
check, which this test does not set up), only documented statuses, the OpenAI error shape on
every error, and the request id header. Afterwards every request that was answered 200 has
its audit record (none lost), and the chains verify.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.gateway_harness import RunningGateway, running_gateway, write_config
from tests.upstream import SimulatorHandle

ADMIN_KEY = "sk-fuzz-admin-000001"
POLICY = """
name: fuzz
input:
  - {check: regex, patterns: ["[\\\\w.+-]+@[\\\\w-]+\\\\.[a-z]{2,}"], entity: EMAIL_ADDRESS, action: redact}
  - {check: deny_terms, terms: [forbidden-word], action: block}
stream:
  checks:
    - {check: regex, patterns: ["[\\\\w.+-]+@[\\\\w-]+\\\\.[a-z]{2,}"], entity: EMAIL_ADDRESS, action: redact}
"""
EXAMPLES_PER_OPERATION = 40
SKIPPED = {"/v1/audit/live"}  # an endless event stream: covered by its own tests
answered: list[tuple[str, str]] = []
cases: list[int] = []


@pytest.fixture(scope="module")
def gw(simulator: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    folder = tmp_path_factory.mktemp("fuzz")
    config = write_config(folder, simulator.base_url, policy_text=POLICY, database_url="sqlite:///./fuzz.db")
    config.write_text(
        config.read_text().replace(
            "keys:\n", f"keys:\n  - {{key: {ADMIN_KEY}, tenant: fuzz, role: admin, id: admin}}\n"
        )
    )
    with running_gateway(config) as running:
        yield running


def check_case(case: Any, gw: RunningGateway) -> None:
    response = case.call(base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=15)
    status = response.status_code
    assert status < 500, f"{case.method} {case.path}: {status} {response.text[:500]}"
    documented = case.operation.definition.raw.get("responses", {})
    assert str(status) in documented, f"{case.method} {case.path}: undocumented {status}"
    request_id = (response.headers.get("x-warden-request-id") or [""])[0]
    assert request_id.startswith("req_")
    if status >= 400 and case.path != "/health":
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["type"]
    cases.append(status)
    if status == 200 and case.path.startswith(("/v1/chat", "/v1/completions", "/v1/embeddings")):
        answered.append((request_id, case.path))


def operations(gw: RunningGateway) -> list[Any]:
    document = httpx.get(f"{gw.url}/openapi.json").json()
    # Most positive cases should reach an upstream: name the models this gateway serves (the
    # negative cases still send every other kind of value).
    models = document["components"]["schemas"]
    for name, served in (("ChatRequest", "gpt-4o-mini"), ("CompletionRequest", "gpt-4o-mini"),
                         ("EmbeddingRequest", "text-embedding-3-small")):  # fmt: skip
        models[name]["properties"]["model"] = {"type": "string", "enum": [served]}
    found = [result.ok() for result in schemathesis.openapi.from_dict(document).get_all_operations()]
    return [op for op in found if op.path not in SKIPPED]


# schemathesis' pytest plugin does not run under pytest 9 yet, so each operation's Hypothesis
# strategy is driven here directly, valid (positive) and invalid (negative) inputs alike.
@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_gateway_survives_generated_requests(gw: RunningGateway, mode: Any) -> None:
    ops = operations(gw)
    assert len(ops) >= 12
    exercised = 0
    for operation in ops:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            check_case(case, gw)

        try:
            run()
        except Unsatisfiable:
            # nothing in this operation can be made invalid (no body, no parameters)
            assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
            continue
        exercised += 1
    assert exercised >= 6


def test_no_audit_record_was_lost(gw: RunningGateway) -> None:
    import sqlite3

    assert len(answered) >= 20, f"the fuzzer got {len(answered)} of {len(cases)} requests through"
    gw.flush_audit(30)
    path = gw.gateway.config.resolved_database_url().removeprefix("sqlite:///")
    deadline = time.monotonic() + 30  # a slow machine: the writer may still be committing
    while True:
        with sqlite3.connect(path) as conn:
            stored = {row[0] for row in conn.execute("SELECT request_id FROM audit_requests")}
        missing = [rid for rid, _ in answered if rid not in stored]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print(f"{len(cases)} generated requests, {len(answered)} answered 200 by a model endpoint")
    config = gw.gateway.config
    spool = config.resolve(config.audit.spool_dir)
    # if any is missing, say where it went: refused by the database, or still in the spool
    where = {p.name: p.read_text()[:2000] for p in spool.glob("*.jsonl") if p.stat().st_size} if missing else {}
    assert missing == [], where
    from audit.db import make_engine
    from audit.read.verify import verify

    result = verify(make_engine(gw.gateway.config.resolved_database_url()))
    assert result.ok, result.problems


def test_the_openapi_document_names_the_request_bodies(gw: RunningGateway, tmp_path: Path) -> None:
    doc = httpx.get(f"{gw.url}/openapi.json").json()
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ChatRequest")
    props = doc["components"]["schemas"]["ChatRequest"]["properties"]
    assert {"messages", "max_tokens", "temperature", "tools"} <= set(props)
    assert "422" not in chat["responses"] and "400" in chat["responses"]
