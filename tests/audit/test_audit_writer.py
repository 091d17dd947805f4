"""The audit writer: batching, the spool when the database is away, replay exactly once."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, text

from audit.chain import ChainKey
from audit.db import make_engine, upgrade
from audit.read.verify import verify
from audit.record import AuditRecord
from audit.write.writer import AuditWriter, replay_spool
from tests.audit_db import audit_url, database_url, make_record, postgres_url

__all__ = ["audit_url", "database_url", "postgres_url"]

REPO = Path(__file__).resolve().parents[2]
KEY = ChainKey.from_key(b"writer-test-key")
DEAD_PG = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1


@pytest.fixture
def engine(audit_url: str) -> Iterator[Engine]:
    eng = make_engine(audit_url)
    yield eng
    eng.dispose()


def ids_in_db(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT request_id FROM audit_requests")).scalars())


def chain_seqs(engine: Engine) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    with engine.connect() as conn:
        for chain_id, seq in conn.execute(text("SELECT chain_id, seq FROM audit_requests ORDER BY chain_id, seq")):
            out.setdefault(chain_id, []).append(seq)
    return out


def assert_exactly_once(engine: Engine, records: list[AuditRecord]) -> None:
    stored = ids_in_db(engine)
    assert sorted(stored) == sorted(r.request_id for r in records)
    for seqs in chain_seqs(engine).values():
        assert seqs == list(range(1, len(seqs) + 1))  # no gaps in any chain
    result = verify(engine, key=KEY)
    assert result.ok, result.problems


def test_records_are_batched_into_the_database(engine: Engine, tmp_path: Path) -> None:
    records = [make_record(i) for i in range(300)]
    writer = AuditWriter(engine, spool_dir=tmp_path, key=KEY, batch_size=64)
    writer.start()
    for r in records:
        writer.submit(r)
    assert writer.flush(30)
    stats = writer.stats
    writer.close()
    assert (stats.committed, stats.spooled, stats.rejected) == (300, 0, 0)
    assert_exactly_once(engine, records)
    assert list(tmp_path.glob("spool-*")) == []  # an empty spool is removed at close


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    url = f"sqlite:///{tmp_path}/audit.db"
    upgrade(url)
    eng = make_engine(url)
    yield url, eng
    eng.dispose()


class WriteLock:
    """Another process's write transaction on the SQLite file: the database is 'busy'."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def test_a_locked_sqlite_spools_then_replays_exactly_once(sqlite_db: tuple[str, Engine], tmp_path: Path) -> None:
    url, engine = sqlite_db
    lock = WriteLock(url.removeprefix("sqlite:///"))
    writer = AuditWriter(
        make_engine(url, sqlite_busy_timeout_ms=100), spool_dir=tmp_path / "spool", key=KEY, retry_initial_s=0.05
    )
    writer.start()
    records = [make_record(i) for i in range(200)]
    for r in records[:120]:
        writer.submit(r)
    assert writer.flush(30)  # durable: in the spool, since the database is busy
    assert writer.stats.spooled == 120
    assert not writer.stats.db_available
    assert ids_in_db(engine) == []
    lock.release()
    for r in records[120:]:
        writer.submit(r)
    assert writer.flush(30, include_spool=True)
    stats = writer.stats
    writer.close()
    assert stats.db_available and not stats.spool_pending
    assert stats.replayed >= 120  # later records may queue behind the spool, in order
    assert (stats.committed, stats.duplicates) == (200, 0)
    assert_exactly_once(engine, records)


def test_a_full_queue_overflows_to_the_spool_never_drops(sqlite_db: tuple[str, Engine], tmp_path: Path) -> None:
    url, engine = sqlite_db
    lock = WriteLock(url.removeprefix("sqlite:///"))
    writer = AuditWriter(
        make_engine(url, sqlite_busy_timeout_ms=300), spool_dir=tmp_path, key=KEY, queue_size=4, batch_size=2
    )
    writer.start()
    records = [make_record(i) for i in range(60)]
    for r in records:
        writer.submit(r)  # the writer thread is stuck on the lock: most of these overflow
    assert writer.flush(30)
    assert writer.stats.spooled >= 50
    lock.release()
    assert writer.flush(30, include_spool=True)
    writer.close()
    assert_exactly_once(engine, records)


def test_unreachable_postgres_spools_and_the_cli_replays_once(postgres_url: str, tmp_path: Path) -> None:
    upgrade(postgres_url)
    writer = AuditWriter(DEAD_PG, spool_dir=tmp_path, key=KEY)
    writer.start()
    records = [make_record(i) for i in range(50)]
    for r in records:
        writer.submit(r)
    assert writer.flush(30)
    writer.close()  # the database never came back: the spool file stays
    assert writer.stats.spooled == 50
    [spool] = tmp_path.glob("spool-*.jsonl")
    assert len(spool.read_bytes().splitlines()) == 50

    first = replay_spool(postgres_url, tmp_path, key=KEY)
    second = replay_spool(postgres_url, tmp_path, key=KEY)
    assert (first.files_replayed, first.inserted) == (1, 50)
    assert (second.files_replayed, second.inserted) == (0, 0)
    assert not spool.exists()
    engine = make_engine(postgres_url)
    try:
        assert_exactly_once(engine, records)
    finally:
        engine.dispose()


def test_replaying_a_spool_twice_inserts_nothing_twice(engine: Engine, tmp_path: Path) -> None:
    """As if the process died after committing a replay but before emptying the spool."""
    spool_dir = tmp_path / "spool"
    writer = AuditWriter(DEAD_PG, spool_dir=spool_dir, key=KEY)
    writer.start()
    records = [make_record(i) for i in range(30)]
    for r in records:
        writer.submit(r)
    assert writer.flush(30)
    writer.close()
    [spool] = spool_dir.glob("spool-*.jsonl")
    saved = tmp_path / "copy.jsonl"
    shutil.copy(spool, saved)

    assert replay_spool(engine, spool_dir, key=KEY).inserted == 30
    shutil.copy(saved, spool)
    again = replay_spool(engine, spool_dir, key=KEY)
    assert (again.inserted, again.duplicates, again.rejected) == (0, 30, 0)
    assert_exactly_once(engine, records)


def test_a_new_writer_takes_over_spools_left_behind(engine: Engine, tmp_path: Path) -> None:
    dead = AuditWriter(DEAD_PG, spool_dir=tmp_path, key=KEY)
    dead.start()
    old = [make_record(i) for i in range(10)]
    for r in old:
        dead.submit(r)
    assert dead.flush(30)
    dead.close()

    writer = AuditWriter(engine, spool_dir=tmp_path, key=KEY)
    writer.start()
    new = [make_record(i) for i in range(10, 15)]
    for r in new:
        writer.submit(r)
    assert writer.flush(30, include_spool=True)
    writer.close()
    assert_exactly_once(engine, old + new)
    assert list(tmp_path.glob("spool-*")) == []


def test_a_live_writers_spool_is_left_to_it(engine: Engine, tmp_path: Path) -> None:
    live = AuditWriter(DEAD_PG, spool_dir=tmp_path, key=KEY)
    live.start()
    live.submit(make_record(1))
    assert live.flush(30)
    result = replay_spool(engine, tmp_path, key=KEY)
    assert (result.files_busy, result.inserted) == (1, 0)
    live.close()


def test_conflicting_and_malformed_records_are_kept_aside(engine: Engine, tmp_path: Path) -> None:
    writer = AuditWriter(engine, spool_dir=tmp_path, key=KEY)
    writer.start()
    good = [make_record(i) for i in range(5)]
    clash = make_record(99, request_id=good[0].request_id)  # same id, different content
    bad = make_record(7)
    bad.verdict = "bogus"  # type: ignore[assignment]
    for r in [*good[:3], clash, bad, *good[3:]]:
        writer.submit(r)
    assert writer.flush(30)
    stats = writer.stats
    writer.close()
    assert (stats.committed, stats.rejected) == (5, 2)
    assert_exactly_once(engine, good)
    rejected = [orjson.loads(line) for line in writer.rejected_path.read_bytes().splitlines()]
    assert {r.get("item", {}).get("request_id") for r in rejected} >= {good[0].request_id}
    assert any("bogus" in r["error"] for r in rejected)


def test_a_record_submitted_again_after_it_was_stored_counts_as_a_duplicate(engine: Engine, tmp_path: Path) -> None:
    """Records off the queue skip the id lookup; the database's refusal brings it back."""
    writer = AuditWriter(engine, spool_dir=tmp_path, key=KEY)
    writer.start()
    records = [make_record(i) for i in range(3)]
    for r in records:
        writer.submit(r)
    assert writer.flush(30)
    writer.submit(records[1])
    writer.submit(make_record(3))  # a fresh one in the same batch still goes in
    assert writer.flush(30)
    stats = writer.stats
    writer.close()
    assert (stats.committed, stats.duplicates, stats.rejected) == (4, 1, 0)
    assert not writer.rejected_path.exists()


def test_writers_in_threads_keep_separate_gapless_chains(engine: Engine, tmp_path: Path) -> None:
    writers = [AuditWriter(engine, spool_dir=tmp_path, key=KEY, batch_size=16) for _ in range(3)]
    batches = [[make_record(i) for i in range(w * 100, w * 100 + 100)] for w in range(3)]

    def run(writer: AuditWriter, records: list[AuditRecord]) -> None:
        writer.start()
        for r in records:
            writer.submit(r)
        assert writer.flush(60)
        writer.close()

    threads = [threading.Thread(target=run, args=pair) for pair in zip(writers, batches, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_exactly_once(engine, [r for b in batches for r in b])
    assert sorted(len(s) for s in chain_seqs(engine).values()) == [100, 100, 100]


CHILD = """
import os, sys, time
from pathlib import Path
from audit.chain import ChainKey
from audit.write.writer import AuditWriter
from tests.audit_db import make_record
url, spool, start, count, mode = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
writer = AuditWriter(url, spool_dir=spool, key=ChainKey.from_key(b"writer-test-key"), batch_size=50)
writer.start()
for i in range(start, start + count):
    writer.submit(make_record(i, request_id=f"req-{i:06d}"))
assert writer.flush(120)
print("acked", writer.requests_chain.chain_id, flush=True)
if mode == "hang":
    time.sleep(600)
writer.close()
"""


def child(url: str, spool: Path, start: int, count: int, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(spool), str(start), str(count), mode],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_sigkill_loses_nothing_acknowledged_to_the_spool(engine: Engine, tmp_path: Path) -> None:
    proc = child(DEAD_PG, tmp_path, 0, 200, "hang")
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("acked"), line
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    result = replay_spool(engine, tmp_path, key=KEY)
    assert (result.inserted, result.rejected) == (200, 0)
    assert sorted(ids_in_db(engine)) == [f"req-{i:06d}" for i in range(200)]
    assert verify(engine, key=KEY).ok


def test_processes_write_to_one_postgres_at_once(postgres_url: str, tmp_path: Path) -> None:
    upgrade(postgres_url)
    procs = [child(postgres_url, tmp_path / str(n), n * 1000, 250, "exit") for n in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0 and out.startswith("acked")
    engine = make_engine(postgres_url)
    try:
        seqs = chain_seqs(engine)
        assert len(seqs) == 2
        assert all(s == list(range(1, 251)) for s in seqs.values())
        assert len(set(ids_in_db(engine))) == 500
        assert verify(engine, key=KEY).ok
    finally:
        engine.dispose()


def _write(engine: Engine, tmp_path: Path, records: list[AuditRecord], **kwargs: object) -> AuditWriter:
    writer = AuditWriter(engine, spool_dir=tmp_path, **{"key": KEY, **kwargs})  # type: ignore[arg-type]
    writer.start()
    for r in records:
        writer.submit(r)
    assert writer.flush(30)
    writer.close()
    return writer


def test_a_restarted_writer_starts_a_new_chain(engine: Engine, tmp_path: Path) -> None:
    first = [make_record(i) for i in range(5)]
    second = [make_record(i) for i in range(5, 9)]
    a = _write(engine, tmp_path, first)
    b = _write(engine, tmp_path, second)
    assert a.requests_chain.chain_id != b.requests_chain.chain_id
    assert sorted(len(s) for s in chain_seqs(engine).values()) == [4, 5]
    assert_exactly_once(engine, first + second)


def test_a_fixed_chain_id_is_continued_across_restarts(engine: Engine, tmp_path: Path) -> None:
    first = [make_record(i) for i in range(5)]
    second = [make_record(i) for i in range(5, 9)]
    _write(engine, tmp_path, first, chain_id="replica-1")
    _write(engine, tmp_path, second, chain_id="replica-1")
    assert chain_seqs(engine) == {"replica-1": list(range(1, 10))}
    assert_exactly_once(engine, first + second)


def test_a_fixed_chain_id_is_not_continued_under_another_key(engine: Engine, tmp_path: Path) -> None:
    _write(engine, tmp_path, [make_record(1)], chain_id="replica-1")
    other = _write(engine, tmp_path, [make_record(2)], chain_id="replica-1", key=ChainKey.from_key(b"rotated"))
    assert other.requests_chain.chain_id.startswith("replica-1-")
    assert sorted(chain_seqs(engine)) == sorted(["replica-1", other.requests_chain.chain_id])


def test_reviews_survive_an_outage_like_records(engine: Engine, tmp_path: Path) -> None:
    down = AuditWriter(DEAD_PG, spool_dir=tmp_path, key=KEY)
    down.start()
    record = make_record(1)
    down.submit(record)
    review = down.submit_review(record.request_id, "alice", "confirm", "seen it")
    assert down.flush(30)
    down.close()
    assert replay_spool(engine, tmp_path, key=KEY).inserted == 2
    with engine.connect() as conn:
        row = conn.execute(text("SELECT request_id, reviewer, ruling, note FROM audit_reviews")).one()
    assert tuple(row) == (record.request_id, "alice", "confirm", "seen it")
    result = verify(engine, key=KEY)
    assert (result.ok, result.reviews_checked) == (True, 1)
    assert review.review_id


def test_an_unreadable_spool_line_is_kept_aside_and_the_rest_replayed(engine: Engine, tmp_path: Path) -> None:
    down = AuditWriter(DEAD_PG, spool_dir=tmp_path, key=KEY)
    down.start()
    records = [make_record(i) for i in range(3)]
    for r in records:
        down.submit(r)
    assert down.flush(30)
    down.close()
    [spool] = tmp_path.glob("spool-*.jsonl")
    lines = spool.read_bytes().splitlines(keepends=True)
    spool.write_bytes(lines[0] + b'{"t": "record", "garbage": true}\n' + b"".join(lines[1:]) + b'{"torn')
    result = replay_spool(engine, tmp_path, key=KEY)
    assert (result.inserted, result.rejected) == (3, 1)
    assert_exactly_once(engine, records)
    [rejected] = tmp_path.glob("rejected-*.jsonl")
    assert b"garbage" in rejected.read_bytes()


def test_a_value_the_database_refuses_costs_only_that_record(engine: Engine, tmp_path: Path) -> None:
    records = [make_record(i) for i in range(6)]
    records[2].prompt_tokens = 2**40  # beyond PostgreSQL's integer; SQLite takes it
    writer = _write(engine, tmp_path, records, batch_size=100)
    refused = 1 if engine.dialect.name == "postgresql" else 0
    assert (writer.stats.committed, writer.stats.rejected) == (6 - refused, refused)
    kept = [r for i, r in enumerate(records) if not (refused and i == 2)]
    assert_exactly_once(engine, kept)
