"""Audit databases for tests (a fresh SQLite file, or a fresh schema on the real PostgreSQL),
and sample records.

Import the fixtures into a test module (``from tests.audit_db import database_url``) and a
test runs once per backend. PostgreSQL is the server at ``WARDEN_TEST_PG_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``, trust auth); each test gets its own
schema (``search_path`` set in the URL), dropped afterwards. When the server is not there a
test is skipped, except under ``CI=true``, where that fails the run: CI must not go green by
quietly testing SQLite only.

Fixtures:
* ``database_url``: an empty database (no tables), parametrized ``sqlite`` / ``postgres``;
* ``audit_url``: the same, migrated to the head revision;
* ``postgres_url``: an empty PostgreSQL schema only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from audit.db import upgrade
from audit.record import AuditRecord, SpanRecord, Stage, StepRecord, Verdict

PG_URL = os.environ.get("WARDEN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _conninfo() -> str:
    return make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        with psycopg.connect(_conninfo(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_URL} unavailable: {exc}"
    return None


def require_postgres() -> None:
    problem = postgres_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{problem} (CI=true: a missing PostgreSQL fails the run)")
    pytest.skip(problem)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A new, empty schema; yields a URL whose connections use it. Dropped on exit."""
    require_postgres()
    schema = f"warden_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    # The application name marks this test's connections, so teardown can end the ones a
    # test (or a killed child process) left open, which would otherwise block the drop.
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}", "application_name": schema})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_conninfo(), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (schema,),
            )
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'audit.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def audit_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


def make_record(n: int = 0, *, steps: int = 20, request_id: str | None = None) -> AuditRecord:
    """A realistic record: input checks, reasoning steps with text, spans, a flagged step."""
    t0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC) + timedelta(seconds=n)
    stages = (
        [Stage.input] * 3
        + [Stage.upstream]
        + [Stage.reasoning] * max(steps - 6, 0)
        + [
            Stage.stream,
            Stage.output,
        ]
    )
    out: list[StepRecord] = []
    for i, stage in enumerate(stages[:steps]):
        verdict = Verdict.flag if i % 7 == 3 else Verdict.redact if i == 0 else Verdict.passed
        out.append(
            StepRecord(
                seq=i + 1,
                stage=stage,
                name="pii" if i == 0 else f"step_{i}" if stage is Stage.reasoning else f"check_{i}",
                verdict=verdict,
                score=round(0.05 * i, 3),
                spans=[SpanRecord("EMAIL_ADDRESS", 6, 23, 0.95, "f" * 32)] if i == 0 else [],
                latency_ms=0.25 * i,
                enforced=i % 5 != 4,
                detail={"n": i, "ratio": 1 / 3, "tags": ["a", "b"], "nested": {"z": 1, "a": None}},
                text=f"Step {i}: 200 × 0.8 = 160, ünïcödé" if stage is Stage.reasoning else None,
                at=t0 + timedelta(milliseconds=i),
            )
        )
    return AuditRecord(
        request_id=request_id or uuid.uuid4().hex,
        started_at=t0,
        tenant=f"tenant-{n % 3}",
        key_id="key-1",
        endpoint="/v1/chat/completions",
        model_requested="gpt-4o-mini",
        stream=n % 2 == 0,
        policy_name="default",
        policy_version="sha256:abc123",
        client_addr="127.0.0.1",
        finished_at=t0 + timedelta(seconds=1),
        model_served="gpt-4o-mini-2024",
        input_text="email <EMAIL_ADDRESS> please",
        output_text="Done.",
        verdict=Verdict.flag,
        finish_reason="stop",
        prompt_tokens=12,
        completion_tokens=34,
        latency_ms=812.5,
        ttft_ms=120.25,
        trace_id="0af7651916cd43dd8448eb211c80319c",
        steps=out,
    )
