"""The writer's fast paths give exactly what the careful ones give, and store and verify alike.

``prepare`` takes a fast path for records that need no normalizing and falls back to the
careful normalizer otherwise; linking splices ``chain_id`` and ``seq`` into bytes made ahead;
rows are built ahead and inserted in multi-row statements (SQLite) or binary COPY
(PostgreSQL). Each must be indistinguishable from the slow way, down to the hashed bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, text

from audit.canonical import canonical, canonical_record
from audit.chain import Chain, ChainKey
from audit.commitments import commit_record
from audit.db import make_engine
from audit.read.export import get_record
from audit.read.verify import ProblemKind, verify
from audit.record import AuditRecord, ChainKind, SpanRecord, Stage, Verdict
from audit.review import ReviewRecord
from audit.write import bulk
from audit.write.prepared import Prepared, _fast_record_obj, _Unusual, prepare, prepare_record_obj
from audit.write.writer import AuditWriter
from tests.audit_db import audit_url, database_url, make_record

__all__ = ["audit_url", "database_url"]

KEY = ChainKey.from_key(b"prepared-test-key")

Change = Callable[[AuditRecord], None]


def _set(attr: str, value: object) -> Change:
    return lambda r: setattr(r, attr, value)


def _step(n: int, attr: str, value: object) -> Change:
    return lambda r: setattr(r.steps[n], attr, value)


def _all(*changes: Change) -> Change:
    def change(r: AuditRecord) -> None:
        for c in changes:
            c(r)

    return change


#: values the fast path must hand to the careful one (each would otherwise be stored wrongly)
UNUSUAL: dict[str, Change] = {
    "nul in text": _set("input_text", "nul\x00byte"),
    "nul in a step": _step(6, "text", "a\x00b"),
    "lone surrogate": _set("output_text", "lone \ud800 surrogate"),
    "lone surrogate in a step name": _step(2, "name", "x\udfffy"),
    "naive datetime": lambda r: setattr(r, "started_at", r.started_at.replace(tzinfo=None)),
    "other time zone": _step(3, "at", datetime(2026, 1, 2, 5, 0, tzinfo=timezone(timedelta(hours=2)))),
    "negative zero": _set("latency_ms", -0.0),
    "negative zero in a step": _step(1, "latency_ms", -0.0),
    "nan": _set("ttft_ms", float("nan")),
    "infinite step score": _step(4, "score", float("inf")),
    "int for a float": _step(5, "score", 1),
    "str subclass": _set("tenant", type("Name", (str,), {})("tenant-x")),
    "int for a str": _set("key_id", 7),
    "big int in detail": _step(0, "detail", {"big": 10**30, 3: "int key", "set": {1}}),
    "escaped nul in detail": _step(0, "detail", {"s": "\x00"}),
}

#: values the fast path takes as they are
USUAL: dict[str, Change] = {
    "plain": lambda r: None,
    "plain strings for enums": _all(_set("verdict", "flag"), _step(0, "stage", "input")),
    "no steps": lambda r: r.steps.clear(),
    "empty detail": _step(2, "detail", {}),
    "nones": _all(
        _set("finished_at", None),
        _set("client_addr", None),
        _set("ttft_ms", None),
        _step(1, "at", None),
        _step(1, "score", None),
    ),
    "spans": _step(8, "spans", [SpanRecord("PHONE", 1, 9, 0.5), SpanRecord("EMAIL", 10, 20, 1.0, "ab" * 16)]),
    "odd floats": _all(_set("latency_ms", 1e20), _step(3, "score", 5e-324)),
    "zero microseconds": _set("started_at", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    "datetime in detail": _step(3, "detail", {"when": datetime(2026, 1, 2, tzinfo=UTC), "x": [1.5, None]}),
    "quotes and escapes": _set(
        "input_text", 'he said "\\u0041" \n\t and ,"seq":null, and "chain_id":null, ,"steps":[ ],"stream":'
    ),
    "keys like the record's in detail": _step(3, "detail", {"steps": [1], "stream": True, "seq": None}),
}


def changed(change: Change, n: int = 1) -> AuditRecord:
    r = make_record(n)
    change(r)
    return r


def careful(r: AuditRecord, like: Prepared) -> Prepared:
    """The careful path's result, committed with ``like``'s salt (each record gets a random one)."""
    assert like.plain is not None
    obj, plain = commit_record(prepare_record_obj(r), bytes.fromhex(like.plain.salt))
    return Prepared(ChainKind.requests, obj, plain=plain)


def rows(p: Prepared, dialect: str) -> bulk.RecordRows:
    return bulk.record_rows(p, dialect)


@pytest.mark.parametrize("name", [*USUAL, *UNUSUAL])
def test_prepare_gives_what_the_careful_normalizer_gives(name: str) -> None:
    r = changed({**USUAL, **UNUSUAL}[name])
    fast = prepare(r)
    slow = careful(r, fast)
    assert fast.canonical() == canonical(slow.obj)
    # the stored steps document is the canonical steps array, byte for byte
    assert fast.steps_json() in fast.canonical()
    assert orjson.loads(fast.steps_json()) == orjson.loads(canonical(slow.obj))["steps"]
    for dialect in ("sqlite", "postgresql"):
        assert rows(fast, dialect) == rows(slow, dialect)
    assert fast.spool_line() == slow.spool_line()


@pytest.mark.parametrize("name", list(USUAL))
def test_usual_records_take_the_fast_path(name: str) -> None:
    r = changed(USUAL[name])
    assert canonical(_fast_record_obj(r)) == canonical(prepare_record_obj(r))


#: NUL and lone surrogates pass the fast path's checks (the canonical dump catches them, see
#: ``_prepare_request``); -0.0 and odd details it folds as the careful path does.
REJECTED = ["naive datetime", "other time zone", "nan", "infinite step score", "int for a float", "str subclass"]


@pytest.mark.parametrize("name", [*REJECTED, "int for a str"])
def test_values_the_fast_path_does_not_normalize_send_the_record_down_the_careful_path(name: str) -> None:
    with pytest.raises(_Unusual):
        _fast_record_obj(changed(UNUSUAL[name]))


@pytest.mark.parametrize("chain_id", ["0123abcd", 'odd "chain" \\ id', "ünï"])
def test_linking_splices_the_same_bytes_as_a_fresh_dump(chain_id: str) -> None:
    chain = Chain(chain_id, ChainKind.requests, KEY, seq=41)
    review = Chain(f"{chain_id}.reviews", ChainKind.reviews, KEY, seq=9)
    for p, c in [(prepare(changed(USUAL["quotes and escapes"])), chain), (prepare(make_record(2)), chain)]:
        c.link(p)
        assert p.canonical() == canonical(p.obj)
        assert p.obj["seq"] == c.seq
    rv = prepare(ReviewRecord(request_id="r1", reviewer="ann", ruling="confirm", note='"seq":null,'))  # type: ignore[arg-type]
    review.link(rv)
    assert rv.canonical() == canonical(rv.obj)


def test_compacted_items_still_spool_and_rebuild_their_rows() -> None:
    r = changed(USUAL["spans"])
    p = prepare(r)
    expected = {d: rows(careful(r, p), d) for d in ("sqlite", "postgresql")}
    bulk.prepare_rows([p], "postgresql")
    assert p.obj["steps"] is None  # compacted
    assert p.rows == expected["postgresql"]
    assert bulk.record_rows(p, "sqlite") == expected["sqlite"]
    again = Prepared.from_line(p.spool_line())
    assert again.canonical() == p.canonical()
    assert bulk.record_rows(again, "sqlite") == expected["sqlite"]


def test_sqlite_timestamps_match_the_one_at_a_time_form() -> None:
    values: list[datetime | None] = [
        datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        None,
        datetime(999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(2026, 7, 1, 0, 0, 0, 10, tzinfo=UTC),
    ]
    assert bulk._sqlite_dts(values) == [bulk._sqlite_dt(v) for v in values]


# -- through the database ---------------------------------------------------------------------


@pytest.fixture
def engine(audit_url: str) -> Iterator[Engine]:
    eng = make_engine(audit_url)
    yield eng
    eng.dispose()


def write(engine: Engine, tmp_path: Path, records: list[AuditRecord]) -> None:
    writer = AuditWriter(engine, spool_dir=tmp_path / "spool", key=KEY, batch_size=7)
    writer.start()
    for r in records:
        writer.submit(r)
    assert writer.flush(60)
    writer.close()
    assert (writer.stats.committed, writer.stats.rejected) == (len(records), 0)


def test_fast_and_careful_records_store_and_verify_alike(engine: Engine, tmp_path: Path) -> None:
    records = [changed(c, n) for n, c in enumerate([*USUAL.values(), *UNUSUAL.values()])]
    write(engine, tmp_path, records)
    result = verify(engine, key=KEY)
    assert result.ok, result.problems
    for r in records:
        stored = get_record(engine, r.request_id)
        assert stored is not None
        expected = orjson.loads(canonical(prepare_record_obj(r)))
        got = orjson.loads(canonical_record(stored))
        assert (got.pop("chain_id"), got.pop("seq")) == (stored.chain_id, stored.seq)
        expected.pop("chain_id"), expected.pop("seq")
        assert got == expected

    # and an edit to a record that took the careful path is still caught
    victim = records[len(USUAL)]
    with engine.begin() as conn:
        # step 2's detail is {"n": 1, ...}
        conn.execute(
            text("UPDATE audit_requests SET steps = replace(steps, :old, :new) WHERE request_id = :r"),
            {"old": '"n":1,', "new": '"n":7,', "r": victim.request_id},
        )
    problem = verify(engine, key=KEY).problems[0]
    assert (problem.kind, problem.record_id) == (ProblemKind.hash_mismatch, victim.request_id)


def test_batches_of_any_size_are_inserted_whole(engine: Engine, tmp_path: Path) -> None:
    # Step counts that make the multi-row inserts split into chunks of every size.
    records = [make_record(n, steps=s) for n, s in enumerate([0, 1, 1100, 3, 511, 2, 20])]
    records[2].steps[700].verdict = Verdict.block
    records[2].steps[700].stage = Stage.reasoning
    write(engine, tmp_path, records)
    with engine.connect() as conn:
        docs = dict(conn.execute(text("SELECT request_id, steps FROM audit_requests")).tuples().all())
        acted: dict[str, int] = dict(
            conn.execute(text("SELECT request_id, count(*) FROM audit_acted_steps GROUP BY request_id")).tuples().all()
        )
        spans = conn.execute(text("SELECT count(*) FROM audit_spans")).scalar_one()
    assert {rid: len(orjson.loads(doc)) for rid, doc in docs.items()} == {r.request_id: len(r.steps) for r in records}
    assert acted == {r.request_id: n for r in records if (n := sum(s.verdict is not Verdict.passed for s in r.steps))}
    assert spans == sum(1 for r in records if r.steps)
    assert verify(engine, key=KEY).ok
