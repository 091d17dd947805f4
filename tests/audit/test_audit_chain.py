"""Hash chains: records round-trip exactly, and verify catches every kind of tampering."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from audit.canonical import canonical, canonical_record, record_obj
from audit.chain import ChainKey, link_hash
from audit.db import make_engine
from audit.models import RequestRow
from audit.read.export import get_record
from audit.read.prune import prune
from audit.read.verify import ProblemKind, VerifyResult, verify
from audit.record import AuditRecord, Ruling, Verdict
from audit.write.prepared import prepare_record_obj
from audit.write.writer import AuditWriter
from tests.audit_db import audit_url, database_url, make_record

__all__ = ["audit_url", "database_url"]

KEY = ChainKey.from_key(b"chain-test-key")
N = 8


@pytest.fixture
def engine(audit_url: str) -> Iterator[Engine]:
    eng = make_engine(audit_url)
    yield eng
    eng.dispose()


def write(engine: Engine, tmp_path: Path, records: list[AuditRecord], key: ChainKey = KEY) -> None:
    writer = AuditWriter(engine, spool_dir=tmp_path / "spool", key=key)
    writer.start()
    for r in records:
        writer.submit(r)
    assert writer.flush(30)
    writer.close()
    assert writer.stats.committed == len(records)


@pytest.fixture
def chain(engine: Engine, tmp_path: Path) -> list[AuditRecord]:
    """N records written in order, as one chain; returns them (ids by seq - 1)."""
    records = [make_record(i) for i in range(N)]
    write(engine, tmp_path, records)
    assert verify(engine, key=KEY).ok
    return records


def rid(chain: list[AuditRecord], seq: int) -> str:
    return chain[seq - 1].request_id


def sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def test_a_twenty_step_record_round_trips_exactly(engine: Engine, tmp_path: Path) -> None:
    original = make_record(1)
    assert len(original.steps) == 20
    write(engine, tmp_path, [original])
    stored = get_record(engine, original.request_id)
    assert stored is not None
    expected = orjson.loads(canonical(prepare_record_obj(original)))
    got = orjson.loads(canonical(record_obj(stored, with_hashes=False)))
    assert got.pop("chain_id") and got.pop("seq") == 1
    expected.pop("chain_id"), expected.pop("seq")
    assert got == expected
    assert [s.seq for s in stored.steps] == list(range(1, 21))
    assert stored.steps[0].spans[0].fingerprint == "f" * 32
    assert stored.steps[5].text == original.steps[5].text
    assert stored.started_at == original.started_at
    assert stored.steps[3].detail == {"n": 3, "ratio": 1 / 3, "tags": ["a", "b"], "nested": {"z": 1, "a": None}}
    # the ORM models read the same: typed steps from the document, the index rows beside them
    with Session(engine) as session:
        row = session.get(RequestRow, original.request_id)
        assert row is not None
        assert row.step_records() == stored.steps
        assert [(a.seq, a.name, a.verdict) for a in row.acted_steps] == [
            (s.seq, s.name, s.verdict.value) for s in original.steps if s.verdict is not Verdict.passed
        ]
        assert [(p.step_seq, p.fingerprint) for p in row.spans] == [(1, "f" * 32)]


def test_awkward_values_are_normalized_so_they_still_verify(engine: Engine, tmp_path: Path) -> None:
    r = make_record(2)
    r.input_text = "nul\x00byte and lone \ud800 surrogate"
    r.latency_ms = -0.0
    r.ttft_ms = float("nan")
    r.steps[0].detail = {"big": 10**30, "float": 1e20, "tuple": (1, 2), 3: "int key", "set": {1}}  # type: ignore[dict-item]
    r.started_at = r.started_at.replace(tzinfo=None)
    write(engine, tmp_path, [r])
    stored = get_record(engine, r.request_id)
    assert stored is not None and stored.input_text is not None
    assert "\x00" not in stored.input_text
    assert stored.ttft_ms is None
    assert verify(engine, key=KEY).ok


def assert_caught(result: VerifyResult, kind: ProblemKind, record_id: str | None) -> None:
    assert not result.ok
    first = result.problems[0]
    assert (first.kind, first.record_id) == (kind, record_id), result.problems


Tamper = Callable[[Engine, list[AuditRecord]], tuple[ProblemKind, str | None]]


def edit_record(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    sql(e, "UPDATE audit_requests SET output_text = 'edited' WHERE request_id = :r", r=rid(c, 3))
    return ProblemKind.hash_mismatch, rid(c, 3)


def edit_verdict(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    sql(e, "UPDATE audit_requests SET verdict = 'pass' WHERE request_id = :r", r=rid(c, 5))
    return ProblemKind.hash_mismatch, rid(c, 5)


def edit_steps(e: Engine, request_id: str, change: Callable[[list[dict[str, object]]], None]) -> None:
    """Change a record's stored steps document, leaving it well-formed canonical JSON."""
    with e.begin() as conn:
        doc = conn.execute(text("SELECT steps FROM audit_requests WHERE request_id = :r"), {"r": request_id}).scalar()
        steps = orjson.loads(doc)
        change(steps)
        new = orjson.dumps(steps, option=orjson.OPT_SORT_KEYS).decode()
        conn.execute(text("UPDATE audit_requests SET steps = :s WHERE request_id = :r"), {"s": new, "r": request_id})


def edit_step(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    edit_steps(e, rid(c, 2), lambda steps: steps[3].update(verdict="pass"))
    return ProblemKind.hash_mismatch, rid(c, 2)


def edit_step_text(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    edit_steps(e, rid(c, 6), lambda steps: steps[8].update(text="I reasoned well"))
    return ProblemKind.hash_mismatch, rid(c, 6)


def reformat_steps(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    """The same steps, spelled differently: still a change to what was written."""
    sql(
        e,
        "UPDATE audit_requests SET steps = replace(steps, '\"seq\":', '\"seq\": ') WHERE request_id = :r",
        r=rid(c, 5),
    )
    return ProblemKind.hash_mismatch, rid(c, 5)


def edit_span(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    edit_steps(e, rid(c, 4), lambda steps: steps[0]["spans"][0].update(end=99))  # type: ignore[index]
    return ProblemKind.hash_mismatch, rid(c, 4)


def edit_span_row(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    sql(e, "UPDATE audit_spans SET span_end = 99 WHERE request_id = :r", r=rid(c, 4))
    return ProblemKind.index_mismatch, rid(c, 4)


def hide_a_flag_from_the_check_filter(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    sql(e, "DELETE FROM audit_acted_steps WHERE request_id = :r AND seq = 4", r=rid(c, 3))
    return ProblemKind.index_mismatch, rid(c, 3)


def edit_acted_row(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    sql(e, "UPDATE audit_acted_steps SET verdict = 'block' WHERE request_id = :r AND seq = 4", r=rid(c, 7))
    return ProblemKind.index_mismatch, rid(c, 7)


def add_acted_row(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    sql(
        e,
        "INSERT INTO audit_acted_steps (request_id, seq, stage, name, verdict, score, enforced)"
        " VALUES (:r, 2, 'input', 'check_1', 'block', 1.0, true)",
        r=rid(c, 6),
    )
    return ProblemKind.index_mismatch, rid(c, 6)


def delete_record(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    for table in ("audit_spans", "audit_acted_steps", "audit_requests"):
        sql(e, f"DELETE FROM {table} WHERE request_id = :r", r=rid(c, 3))  # noqa: S608
    return ProblemKind.gap, rid(c, 4)


def delete_last_record(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    for table in ("audit_spans", "audit_acted_steps", "audit_requests"):
        sql(e, f"DELETE FROM {table} WHERE request_id = :r", r=rid(c, N))  # noqa: S608
    return ProblemKind.missing_tail, None


def index_rows_for_no_record(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    sql(
        e,
        "INSERT INTO audit_acted_steps (request_id, seq, stage, name, verdict, score, enforced)"
        " VALUES ('ghost', 1, 'input', 'pii', 'block', 1.0, true)",
    )
    return ProblemKind.orphan_index, "ghost"


def delete_step(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    edit_steps(e, rid(c, 7), lambda steps: steps.pop())
    return ProblemKind.hash_mismatch, rid(c, 7)


def insert_step(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    late = {"seq": 21, "stage": "output", "name": "late", "verdict": "pass", "score": None, "spans": []}
    late |= {"latency_ms": 0.0, "enforced": True, "detail": {}, "text": None, "at": None}
    edit_steps(e, rid(c, 2), lambda steps: steps.append(late))
    return ProblemKind.hash_mismatch, rid(c, 2)


def reorder_steps(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    def swap(steps: list[dict[str, object]]) -> None:
        steps[1]["seq"], steps[2]["seq"] = steps[2]["seq"], steps[1]["seq"]
        steps[1], steps[2] = steps[2], steps[1]

    edit_steps(e, rid(c, 4), swap)
    return ProblemKind.hash_mismatch, rid(c, 4)


def reorder_records(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    sql(e, "UPDATE audit_requests SET seq = 100 WHERE request_id = :r", r=rid(c, 2))
    sql(e, "UPDATE audit_requests SET seq = 2 WHERE request_id = :r", r=rid(c, 3))
    sql(e, "UPDATE audit_requests SET seq = 3 WHERE request_id = :r", r=rid(c, 2))
    return ProblemKind.broken_link, rid(c, 3)


def _copy_record(conn: Connection, src: str, new: str, seq: int) -> None:
    conn.execute(
        text(
            "INSERT INTO audit_requests SELECT :new, chain_id, :seq, prev_hash, hash, started_at, finished_at,"
            " tenant, key_id, client_addr, endpoint, model_requested, model_served, stream, policy_name,"
            " policy_version, input_text, output_text, verdict, status, http_status, finish_reason,"
            " prompt_tokens, completion_tokens, latency_ms, ttft_ms, trace_id, error, steps,"
            " salt, texts, erasure_id, erased_commits FROM audit_requests WHERE request_id = :src"
        ),
        {"new": new, "seq": seq, "src": src},
    )


def insert_record_at_end(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    with e.begin() as conn:
        _copy_record(conn, rid(c, 2), "forged", N + 1)
    return ProblemKind.broken_link, "forged"


def insert_record_in_middle(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    with e.begin() as conn:
        for seq in range(N, 3, -1):  # make room at seq 4, as an attacker would
            conn.execute(
                text("UPDATE audit_requests SET seq = :n WHERE request_id = :r"), {"n": seq + 1, "r": rid(c, seq)}
            )
        _copy_record(conn, rid(c, 3), "forged", 4)
    return ProblemKind.broken_link, "forged"


def rebuild_chain_without_the_key(e: Engine, c: list[AuditRecord]) -> tuple[ProblemKind, str | None]:
    """Edit a record, then re-hash the whole chain consistently, with a guessed key."""
    edit_record(e, c)
    guess = ChainKey.from_key(b"guessed")
    stored = [get_record(e, r.request_id) for r in c]
    prev = "0" * 64
    with e.begin() as conn:
        for rec in stored:
            assert rec is not None
            rec.prev_hash = prev
            rec.hash = link_hash(guess, prev, canonical_record(rec))
            conn.execute(
                text("UPDATE audit_requests SET prev_hash = :p, hash = :h WHERE request_id = :r"),
                {"p": prev, "h": rec.hash, "r": rec.request_id},
            )
            prev = rec.hash
        conn.execute(text("UPDATE audit_chains SET head_hash = :h WHERE kind = 'requests'"), {"h": prev})
    return ProblemKind.hash_mismatch, rid(c, 1)


TAMPERS = [
    edit_record,
    edit_verdict,
    edit_step,
    edit_step_text,
    reformat_steps,
    edit_span,
    edit_span_row,
    hide_a_flag_from_the_check_filter,
    edit_acted_row,
    add_acted_row,
    index_rows_for_no_record,
    delete_record,
    delete_last_record,
    delete_step,
    insert_step,
    reorder_steps,
    reorder_records,
    insert_record_at_end,
    insert_record_in_middle,
    rebuild_chain_without_the_key,
]


@pytest.mark.parametrize("tamper", TAMPERS, ids=[t.__name__ for t in TAMPERS])
def test_verify_names_the_first_bad_record(engine: Engine, chain: list[AuditRecord], tamper: Tamper) -> None:
    kind, bad = tamper(engine, chain)
    assert_caught(verify(engine, key=KEY), kind, bad)


def test_verify_counts_what_it_checked(engine: Engine, chain: list[AuditRecord]) -> None:
    result = verify(engine, key=KEY)
    assert (result.ok, result.records_checked, result.chains_checked) == (True, N, 1)
    assert result.first_bad_id is None


def test_a_keyed_chain_cannot_be_checked_without_its_key(engine: Engine, chain: list[AuditRecord]) -> None:
    assert verify(engine, key=ChainKey.from_key(None)).problems[0].kind is ProblemKind.key_missing
    assert verify(engine, key=ChainKey.from_key(b"other")).problems[0].kind is ProblemKind.key_mismatch


def test_unkeyed_chains_verify_without_a_key(engine: Engine, tmp_path: Path) -> None:
    plain = ChainKey.from_key(None)
    records = [make_record(i) for i in range(3)]
    write(engine, tmp_path, records, key=plain)
    assert verify(engine, key=plain).ok
    sql(engine, "UPDATE audit_requests SET tenant = 'x' WHERE request_id = :r", r=records[1].request_id)
    assert_caught(verify(engine, key=plain), ProblemKind.hash_mismatch, records[1].request_id)
    # With a key configured, a chain that was written without one is itself suspicious.
    assert verify(engine, key=KEY).problems[0].kind is ProblemKind.unkeyed_chain


def test_review_decisions_are_chained_too(engine: Engine, chain: list[AuditRecord], tmp_path: Path) -> None:
    writer = AuditWriter(engine, spool_dir=tmp_path / "spool", key=KEY)
    writer.start()
    reviews = [
        writer.submit_review(rid(chain, 1), "alice", Ruling.confirm, "real card number"),
        writer.submit_review(rid(chain, 2), "bob", "false_positive", "test data"),
        writer.submit_review(rid(chain, 2), "carol", Ruling.escalate),
    ]
    assert writer.flush(30)
    writer.close()
    result = verify(engine, key=KEY)
    assert (result.ok, result.reviews_checked) == (True, 3)
    sql(engine, "UPDATE audit_reviews SET ruling = 'confirm' WHERE review_id = :r", r=reviews[1].review_id)
    assert_caught(verify(engine, key=KEY), ProblemKind.hash_mismatch, reviews[1].review_id)


def test_prune_keeps_verify_passing(engine: Engine, chain: list[AuditRecord], tmp_path: Path) -> None:
    cutoff = chain[0].started_at + timedelta(seconds=5)  # records 0..4 are older
    result = prune(engine, cutoff, key=KEY)
    assert (result.records_deleted, result.checkpoints) == (5, ((_chain_id(engine), 5),))
    after = verify(engine, key=KEY)
    assert (after.ok, after.records_checked) == (True, N - 5), after.problems
    assert get_record(engine, rid(chain, 5)) is None
    assert get_record(engine, rid(chain, 6)) is not None
    # Pruning again changes nothing; deleting the oldest kept record is still caught.
    assert prune(engine, cutoff, key=KEY).records_deleted == 0
    for table in ("audit_spans", "audit_acted_steps", "audit_requests"):
        sql(engine, f"DELETE FROM {table} WHERE request_id = :r", r=rid(chain, 6))  # noqa: S608
    assert_caught(verify(engine, key=KEY), ProblemKind.gap, rid(chain, 7))


def _chain_id(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT chain_id FROM audit_chains WHERE kind = 'requests'")).scalar_one())


def test_prune_refuses_to_destroy_tampered_records(engine: Engine, chain: list[AuditRecord]) -> None:
    edit_record(engine, chain)
    result = prune(engine, chain[0].started_at + timedelta(seconds=5), key=KEY)
    assert result.records_deleted == 0
    assert result.skipped[0].record_id == rid(chain, 3)


def test_a_forged_checkpoint_is_reported(engine: Engine, chain: list[AuditRecord]) -> None:
    """Deleting old records and writing a checkpoint by hand does not hide them."""
    sql(
        engine,
        "INSERT INTO audit_checkpoints (chain_id, seq, hash, pruned_before, records_pruned, created_at, mac)"
        " SELECT chain_id, seq, hash, started_at, seq, started_at, :mac FROM audit_requests WHERE request_id = :r",
        r=rid(chain, 3),
        mac="0" * 64,
    )
    for seq in (1, 2, 3):
        for table in ("audit_spans", "audit_acted_steps", "audit_requests"):
            sql(engine, f"DELETE FROM {table} WHERE request_id = :r", r=rid(chain, seq))  # noqa: S608
    result = verify(engine, key=KEY)
    assert result.problems[0].kind is ProblemKind.bad_checkpoint
    assert any(p.kind is ProblemKind.gap and p.record_id == rid(chain, 4) for p in result.problems)


def test_pruning_everything_leaves_verifiable_chains(engine: Engine, chain: list[AuditRecord], tmp_path: Path) -> None:
    writer = AuditWriter(engine, spool_dir=tmp_path / "spool", key=KEY)
    writer.start()
    writer.submit_review(rid(chain, 1), "alice", Ruling.confirm)
    writer.submit_review(rid(chain, 2), "alice", Ruling.escalate)
    assert writer.flush(30)
    writer.close()
    result = prune(engine, chain[-1].started_at + timedelta(days=3650), key=KEY)
    assert (result.records_deleted, result.reviews_deleted, len(result.checkpoints)) == (N, 2, 2)
    after = verify(engine, key=KEY)
    assert (after.ok, after.records_checked, after.reviews_checked) == (True, 0, 0), after.problems
    sql(engine, "DELETE FROM audit_checkpoints WHERE seq = 2")  # the reviews' checkpoint
    assert verify(engine, key=KEY).problems[0].kind is ProblemKind.missing_tail


@pytest.mark.parametrize("size", [0, 1, 2046, 2047, 2048, 4095, 10_000])
def test_chain_digests_are_plain_sha256_and_hmac_sha256_whatever_the_size(size: int) -> None:
    """The digest is fed in pieces (to keep the interpreter lock); stored chains must still verify."""
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert ChainKey.from_key(None).digest(data) == hashlib.sha256(data).hexdigest()
    assert KEY.secret is not None
    assert KEY.digest(data) == hmac.digest(KEY.secret, data, "sha256").hex()
