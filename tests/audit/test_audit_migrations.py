"""Data migrations: records written under an older schema keep verifying after an upgrade.

Revision 0001 kept a record's steps as rows (``audit_steps``); 0002 keeps them as one document
on the request row. Records are written here the way 0001's writer wrote them (the rows and
the hash over the canonical form), then upgraded, checked, downgraded and upgraded again.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine, text

from audit.canonical import canonical, record_obj
from audit.chain import GENESIS, ChainKey, link_hash
from audit.db import HEAD_REVISION, alembic_config, current_revision, make_engine, upgrade
from audit.read.export import get_record
from audit.read.verify import verify
from audit.record import AuditRecord, SpanRecord, Verdict
from tests.audit_db import database_url, make_record

__all__ = ["database_url"]

KEY = ChainKey.from_key(b"migration-test-key")
CHAIN = "chain-written-by-0001"

_meta = sa.MetaData()
_requests = sa.Table(
    "audit_requests",
    _meta,
    *(sa.Column(c, sa.String()) for c in ("request_id", "chain_id", "prev_hash", "hash", "tenant", "key_id")),
    *(sa.Column(c, sa.String()) for c in ("client_addr", "endpoint", "model_requested", "model_served")),
    *(sa.Column(c, sa.String()) for c in ("policy_name", "policy_version", "input_text", "output_text")),
    *(sa.Column(c, sa.String()) for c in ("verdict", "status", "finish_reason", "trace_id", "error")),
    *(sa.Column(c, sa.Integer()) for c in ("seq", "http_status", "prompt_tokens", "completion_tokens")),
    *(sa.Column(c, sa.Double()) for c in ("latency_ms", "ttft_ms")),
    *(sa.Column(c, sa.DateTime(timezone=True)) for c in ("started_at", "finished_at")),
    sa.Column("stream", sa.Boolean()),
)
_steps = sa.Table(
    "audit_steps",
    _meta,
    *(sa.Column(c, sa.String()) for c in ("request_id", "stage", "name", "verdict", "text")),
    sa.Column("seq", sa.Integer()),
    *(sa.Column(c, sa.Double()) for c in ("score", "latency_ms")),
    sa.Column("enforced", sa.Boolean()),
    sa.Column("detail", sa.JSON()),
    sa.Column("at", sa.DateTime(timezone=True)),
)
_spans = sa.Table(
    "audit_spans",
    _meta,
    *(sa.Column(c, sa.String()) for c in ("request_id", "entity_type", "fingerprint")),
    *(sa.Column(c, sa.Integer()) for c in ("step_seq", "idx", "span_start", "span_end")),
    sa.Column("score", sa.Double()),
)
_chains = sa.Table(
    "audit_chains",
    _meta,
    *(sa.Column(c, sa.String()) for c in ("chain_id", "kind", "algorithm", "key_id", "host", "head_hash")),
    sa.Column("pid", sa.Integer()),
    sa.Column("last_seq", sa.Integer()),
    sa.Column("started_at", sa.DateTime(timezone=True)),
)


def records() -> list[AuditRecord]:
    out = [make_record(n) for n in range(6)]
    out.append(make_record(6, steps=0))
    odd = make_record(7, steps=3)
    odd.steps[1].spans = [SpanRecord("PHONE_NUMBER", 1, 9, 0.5), SpanRecord("EMAIL_ADDRESS", 10, 20, 1.0, "ab" * 16)]
    odd.steps[1].verdict = Verdict.block
    odd.steps[2].detail = {"when": "2026-01-02T03:04:05Z", "nested": {"b": [1.5, None], "a": True}}
    out.append(odd)
    return out


def write_as_0001(engine: Engine, recs: list[AuditRecord]) -> None:
    """Rows and hashes as revision 0001's writer made them."""
    prev = GENESIS
    with engine.begin() as conn:
        for seq, r in enumerate(recs, 1):
            r.chain_id, r.seq = CHAIN, seq
            r.prev_hash, r.hash = prev, link_hash(KEY, prev, canonical(record_obj(r, with_hashes=False)))
            prev = r.hash
            row = {c.name: getattr(r, c.name) for c in _requests.columns if c.name not in ("verdict", "status")}
            conn.execute(_requests.insert(), {**row, "verdict": r.verdict.value, "status": r.status.value})
            for s in r.steps:
                conn.execute(
                    _steps.insert(),
                    {"request_id": r.request_id, "seq": s.seq, "stage": s.stage.value, "name": s.name}
                    | {"verdict": s.verdict.value, "score": s.score, "latency_ms": s.latency_ms}
                    | {"enforced": s.enforced, "detail": s.detail, "text": s.text, "at": s.at},
                )
                for i, sp in enumerate(s.spans):
                    conn.execute(
                        _spans.insert(),
                        {"request_id": r.request_id, "step_seq": s.seq, "idx": i, "entity_type": sp.entity_type}
                        | {"span_start": sp.start, "span_end": sp.end, "score": sp.score}
                        | {"fingerprint": sp.fingerprint},
                    )
        conn.execute(
            _chains.insert(),
            {"chain_id": CHAIN, "kind": "requests", "algorithm": KEY.algorithm, "key_id": KEY.key_id}
            | {"host": "old-host", "pid": 1, "last_seq": len(recs), "head_hash": prev}
            | {"started_at": datetime(2026, 1, 1, tzinfo=UTC)},
        )


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    upgrade(database_url, "0001")
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_records_written_as_step_rows_verify_after_the_upgrade(engine: Engine) -> None:
    recs = records()
    write_as_0001(engine, recs)
    upgrade(engine)
    assert current_revision(engine) == HEAD_REVISION
    result = verify(engine, key=KEY)
    assert (result.ok, result.records_checked) == (True, len(recs)), result.problems
    for r in recs:
        stored = get_record(engine, r.request_id)
        assert stored is not None
        assert record_obj(stored) == record_obj(r)
    acted = sum(s.verdict is not Verdict.passed for r in recs for s in r.steps)
    assert count(engine, "SELECT count(*) FROM audit_acted_steps") == acted
    assert count(engine, "SELECT count(*) FROM audit_spans") == sum(len(s.spans) for r in recs for s in r.steps)


def test_a_downgrade_gives_the_step_rows_back(engine: Engine) -> None:
    recs = records()
    write_as_0001(engine, recs)
    upgrade(engine)
    downgrade(engine, "0001")
    assert count(engine, "SELECT count(*) FROM audit_steps") == sum(len(r.steps) for r in recs)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(_steps).where(_steps.c.request_id == recs[7].request_id)).mappings().all()
    assert [row["detail"] for row in rows] == [s.detail for s in recs[7].steps]
    assert [row["at"].replace(tzinfo=UTC) for row in rows] == [s.at for s in recs[7].steps]
    upgrade(engine)  # and up again: still intact
    assert verify(engine, key=KEY).ok
