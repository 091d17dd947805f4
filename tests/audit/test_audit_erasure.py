"""Erasure: texts go, the chains still verify, and the erasure is itself on record."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from audit.chain import ChainKey
from audit.db import make_engine
from audit.read.erasure import apply_retention, erase
from audit.read.export import get_record
from audit.read.verify import ProblemKind, verify
from audit.record import AuditRecord
from audit.write.writer import AuditWriter
from tests.audit_db import audit_url, database_url, make_record

__all__ = ["audit_url", "database_url"]

KEY = ChainKey.from_key(b"erasure-test-key")
N = 6


@pytest.fixture
def engine(audit_url: str) -> Iterator[Engine]:
    eng = make_engine(audit_url)
    yield eng
    eng.dispose()


@pytest.fixture
def records(engine: Engine, tmp_path: Path) -> list[AuditRecord]:
    recs = [make_record(i) for i in range(N)]  # tenants tenant-0..2, every one with a span fingerprint "f" * 32
    writer = AuditWriter(engine, spool_dir=tmp_path / "spool", key=KEY)
    writer.start()
    for r in recs:
        writer.submit(r)
    assert writer.flush(30)
    writer.close()
    assert verify(engine, key=KEY).ok
    return recs


def stored_fingerprints(engine: Engine, request_id: str) -> list[str | None]:
    with engine.connect() as conn:
        return list(
            conn.execute(text("SELECT fingerprint FROM audit_spans WHERE request_id = :r"), {"r": request_id}).scalars()
        )


def test_erasing_one_request_keeps_every_chain_verifiable(engine: Engine, records: list[AuditRecord]) -> None:
    victim, other = records[2], records[3]
    result = erase(engine, actor="dpo@example.com", request_id=victim.request_id, key=KEY)
    assert (result.erased, result.not_erasable) == (1, 0)
    stored = get_record(engine, victim.request_id)
    assert stored is not None
    assert (stored.input_text, stored.output_text) == (None, None)
    assert all(s.text is None for s in stored.steps)
    assert all(sp.fingerprint is None for s in stored.steps for sp in s.spans)
    assert stored.steps[0].spans[0].entity_type == "EMAIL_ADDRESS"  # what was found stays, not the value
    assert stored_fingerprints(engine, victim.request_id) == [None]
    kept = get_record(engine, other.request_id)
    assert kept is not None
    assert kept.input_text == other.input_text
    assert kept.steps[5].text == other.steps[5].text
    result_v = verify(engine, key=KEY)
    assert result_v.ok, result_v.problems
    assert result_v.erased == 1
    (described,) = result_v.erasures
    assert "by dpo@example.com at" in described
    assert f"(request {victim.request_id})" in described


def test_erasing_by_tenant_and_by_subject_fingerprint(engine: Engine, records: list[AuditRecord]) -> None:
    assert erase(engine, actor="dpo", tenant="tenant-1", key=KEY).erased == 2
    by_subject = erase(engine, actor="dpo", subject_fingerprint="f" * 32, key=KEY)
    assert (by_subject.erased, by_subject.already_erased) == (N - 2, 0)
    again = erase(engine, actor="dpo", subject_fingerprint="f" * 32, key=KEY)
    assert again.erased == 0  # the fingerprints are gone with the texts
    result = verify(engine, key=KEY)
    assert result.ok, result.problems
    assert result.erased == N
    assert len(result.erasures) == 2


def test_an_erasure_nobody_recorded_is_reported(engine: Engine, records: list[AuditRecord]) -> None:
    victim = records[1]
    erase(engine, actor="dpo", request_id=records[0].request_id, key=KEY)
    # someone blanks another record's texts and points it at the real erasure record
    with engine.begin() as conn:
        eid = conn.execute(text("SELECT erasure_id FROM audit_erasures")).scalar_one()
        conn.execute(
            text(
                "UPDATE audit_requests SET input_text = NULL, output_text = NULL, texts = NULL, salt = NULL,"
                " erasure_id = :e, erased_commits = '{}' WHERE request_id = :r"
            ),
            {"e": eid, "r": victim.request_id},
        )
    kinds = {p.kind for p in verify(engine, key=KEY).problems if p.record_id == victim.request_id}
    assert ProblemKind.erasure_unrecorded in kinds


def test_an_edited_text_still_breaks_the_chain(engine: Engine, records: list[AuditRecord]) -> None:
    victim = records[4]
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_requests SET output_text = 'edited' WHERE request_id = :r"), {"r": victim.request_id}
        )
    problem = verify(engine, key=KEY).problems[0]
    assert (problem.kind, problem.record_id) == (ProblemKind.hash_mismatch, victim.request_id)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_requests SET texts = replace(texts, 'Step 5', 'Step 9') WHERE request_id = :r"),
            {"r": records[5].request_id},
        )
    problems = [p for p in verify(engine, key=KEY).problems if p.record_id == records[5].request_id]
    assert [p.kind for p in problems] == [ProblemKind.hash_mismatch]


def test_an_edited_erasure_record_breaks_its_chain(engine: Engine, records: list[AuditRecord]) -> None:
    erase(engine, actor="dpo", request_id=records[0].request_id, key=KEY)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_erasures SET actor = 'someone else'"))
    kinds = [p.kind for p in verify(engine, key=KEY).problems]
    assert ProblemKind.hash_mismatch in kinds


def test_retention_erases_per_tenant(engine: Engine, records: list[AuditRecord]) -> None:
    later = records[0].started_at + timedelta(days=40)
    result = apply_retention(engine, {"tenant-0": 30, "*": 60}, now=later, key=KEY)
    assert result.erased == 2  # tenant-0 only: the others keep 60 days
    for r in records:
        stored = get_record(engine, r.request_id)
        assert stored is not None
        assert (stored.input_text is None) == (r.tenant == "tenant-0")
    result_v = verify(engine, key=KEY)
    assert result_v.ok and result_v.erased == 2
    assert "retention" in result_v.erasures[0]
    assert apply_retention(engine, 1, now=datetime.now(UTC), key=KEY).erased == N - 2


def test_cli_erase(engine: Engine, records: list[AuditRecord], audit_url: str) -> None:
    env = {**os.environ, "WARDEN_DATABASE_URL": audit_url, "WARDEN_AUDIT_KEY": "erasure-cli-key", "USER": "dpo"}
    env.pop("WARDEN_CONFIG", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "audit", *args], capture_output=True, text=True, env=env, check=False
        )

    none = cli("erase")
    assert none.returncode == 2
    assert "exactly one of" in none.stderr
    missing = cli("erase", "--request", "no-such-request")
    assert missing.returncode == 1
    done = cli("erase", "--request", records[0].request_id)
    assert done.returncode == 0, done.stderr
    assert "erased the texts of 1 records" in done.stdout
    stored = get_record(engine, records[0].request_id)
    assert stored is not None and stored.input_text is None


def test_records_from_before_commitments_still_verify_and_are_left_by_erase(database_url: str, tmp_path: Path) -> None:
    from audit.db import upgrade
    from tests.audit import test_audit_migrations as old

    upgrade(database_url, "0001")
    eng = make_engine(database_url)
    try:
        recs = old.records()  # tenants tenant-0..2; tenant-0 has three
        old.write_as_0001(eng, recs)
        upgrade(eng)
        new = make_record(9)  # tenant-0, written by this writer: committed
        writer = AuditWriter(eng, spool_dir=tmp_path / "spool", key=old.KEY)
        writer.start()
        writer.submit(new)
        assert writer.flush(30)
        writer.close()
        result = erase(eng, actor="dpo", tenant="tenant-0", key=old.KEY)
        assert (result.erased, result.not_erasable) == (1, 3)
        checked = verify(eng, key=old.KEY)
        assert checked.ok, checked.problems
        assert (checked.records_checked, checked.erased) == (len(recs) + 1, 1)
        kept = get_record(eng, recs[0].request_id)
        assert kept is not None and kept.input_text == recs[0].input_text
    finally:
        eng.dispose()


def test_cli_retention_follows_the_config(
    engine: Engine, records: list[AuditRecord], audit_url: str, tmp_path: Path
) -> None:
    from tests.gateway_harness import write_config

    extra = """
    audit:
      retention_days: {tenant-0: 30, "*": 36500}
    """
    config = write_config(tmp_path / "cfg", "http://127.0.0.1:9/v1", database_url=audit_url, extra=extra)
    env = {k: v for k, v in os.environ.items() if k not in ("WARDEN_DATABASE_URL", "WARDEN_CONFIG")}
    env["WARDEN_AUDIT_KEY"] = "erasure-cli-key"
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "retention", "--config", str(config)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "erased the texts of 2 records" in done.stdout  # tenant-0's, written long ago
