"""Monthly partitions of the audit trail on PostgreSQL: migration, prune by month, verify after.

All against the real PostgreSQL (a fresh schema per test; under CI=true a missing server fails).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from audit import partitions
from audit.chain import Chain, ChainKey
from audit.db import HEAD_REVISION, alembic_config, current_revision, make_engine, upgrade
from audit.read.prune import prune
from audit.read.verify import ProblemKind, verify
from audit.record import AuditRecord, ChainKind
from audit.write.prepared import prepare
from audit.write.store import commit_batch
from tests.audit_db import make_record, postgres_url

__all__ = ["postgres_url"]

KEY = ChainKey.from_key(b"partition-test-key")
SEP, OCT, NOV, DEC = (datetime(2026, m, 3, 12, tzinfo=UTC) for m in (9, 10, 11, 12))


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def record(n: int, started: datetime) -> AuditRecord:
    return dataclasses.replace(make_record(n, steps=8), started_at=started, finished_at=started + timedelta(seconds=1))


def write(engine: Engine, chain: Chain, records: Sequence[AuditRecord]) -> None:
    reviews = Chain.new(ChainKind.reviews, KEY)
    outcome = commit_batch(engine, chain, reviews, [prepare(r) for r in records], dedupe=True)
    assert outcome.inserted == len(records)


def scalar(engine: Engine, sql: str) -> object:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


def indexes(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        q = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'audit_requests'"
        return set(conn.execute(text(q)).scalars())


def names(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {p.name for p in partitions.partitions(conn)}


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def month_records(start: datetime, n: int, first: int = 0) -> list[AuditRecord]:
    return [record(first + i, start + timedelta(hours=i)) for i in range(n)]


def test_migration_partitions_a_stored_trail_and_it_still_verifies(postgres_url: str) -> None:
    upgrade(postgres_url, "0005_commitments")
    engine = make_engine(postgres_url)
    try:
        chain = Chain.new(ChainKind.requests, KEY)
        write(engine, chain, month_records(SEP, 3) + month_records(OCT, 3, 10))
        with engine.begin() as conn:  # as another migration before this one might add
            conn.execute(text("CREATE INDEX ix_audit_requests_extra ON audit_requests (status, started_at)"))
        upgrade(postgres_url)
        assert current_revision(engine) == HEAD_REVISION  # and the migrations after it run on the partitioned table
        assert "ix_audit_requests_extra" in indexes(engine)  # kept, on the parent and so on every month
        with engine.connect() as conn:
            assert partitions.is_partitioned(conn)
        assert {"audit_requests_p202609", "audit_requests_p202610"} <= names(engine)
        assert scalar(engine, "SELECT count(*) FROM audit_requests_p202609") == 3
        assert scalar(engine, "SELECT count(*) FROM audit_requests_p202610") == 3
        result = verify(engine, key=KEY)
        assert (result.ok, result.records_checked) == (True, 6), result.problems
        # the chain goes on in the partitioned table, and back down and up again keeps it whole
        write(engine, chain, month_records(NOV, 2, 20))
        downgrade(engine, "0005_commitments")
        with engine.connect() as conn:
            assert not partitions.is_partitioned(conn)
        assert {"ix_audit_requests_extra", "ix_audit_requests_erasure_id"} <= indexes(engine)
        assert verify(engine, key=KEY).records_checked == 8
        upgrade(postgres_url)
        assert verify(engine, key=KEY).ok
    finally:
        engine.dispose()


def test_prune_drops_whole_months_and_verify_passes_through_the_checkpoint(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for month in (SEP, OCT, NOV):
            partitions.create_month(conn, month)
    a, b = Chain.new(ChainKind.requests, KEY), Chain.new(ChainKind.requests, KEY)
    write(engine, a, month_records(SEP, 4) + month_records(OCT, 4, 10) + month_records(NOV, 3, 20))
    write(engine, b, month_records(OCT, 2, 30) + month_records(DEC, 2, 40))
    acted_before = scalar(engine, "SELECT count(*) FROM audit_acted_steps")

    result = prune(engine, datetime(2026, 11, 1, tzinfo=UTC), key=KEY)

    assert result.partitions_dropped == ("audit_requests_p202609", "audit_requests_p202610")
    assert result.records_deleted == 10
    assert sorted(result.checkpoints) == sorted([(a.chain_id, 8), (b.chain_id, 2)])
    assert not {"audit_requests_p202609", "audit_requests_p202610"} & names(engine)
    assert scalar(engine, "SELECT count(*) FROM audit_requests") == 5
    # their index rows went with them: none left without a record
    assert scalar(engine, "SELECT count(*) FROM audit_acted_steps") == acted_before * 5 // 15
    after = verify(engine, key=KEY)
    assert (after.ok, after.records_checked) == (True, 5), after.problems
    # a deleted record after the checkpoint is still caught
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_requests WHERE chain_id = :c AND seq = 9"), {"c": a.chain_id})
    assert verify(engine, key=KEY).problems[0].kind is ProblemKind.gap


def test_a_month_holding_a_straggler_is_kept_until_it_is_covered(engine: Engine) -> None:
    """A request that started on 31 October but was linked after one that started on
    1 November is not in October's prefix: October stays until November is pruned too."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for month in (OCT, NOV):
            partitions.create_month(conn, month)
    chain = Chain.new(ChainKind.requests, KEY)
    late = record(99, datetime(2026, 10, 31, 23, 59, tzinfo=UTC))
    early_nov = record(98, datetime(2026, 11, 1, 0, 0, 1, tzinfo=UTC))
    write(engine, chain, [*month_records(OCT, 3), early_nov, late, *month_records(DEC, 1, 50)])

    first = prune(engine, datetime(2026, 11, 1, tzinfo=UTC), key=KEY)
    assert first.partitions_dropped == ()
    assert first.records_deleted == 3  # row by row: October's covered prefix
    assert "audit_requests_p202610" in names(engine)
    assert verify(engine, key=KEY).ok

    second = prune(engine, datetime(2026, 12, 1, tzinfo=UTC), key=KEY)
    assert second.partitions_dropped == ("audit_requests_p202610", "audit_requests_p202611")
    assert second.records_deleted == 2
    after = verify(engine, key=KEY)
    assert (after.ok, after.records_checked) == (True, 1), after.problems


def test_a_month_of_a_chain_that_does_not_verify_is_not_dropped(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        partitions.create_month(conn, OCT)
    chain = Chain.new(ChainKind.requests, KEY)
    write(engine, chain, month_records(OCT, 3) + month_records(DEC, 1, 10))
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_requests SET tenant = 'edited' WHERE seq = 2"))
    result = prune(engine, datetime(2026, 11, 1, tzinfo=UTC), key=KEY)
    assert (result.partitions_dropped, result.records_deleted) == ((), 0)
    assert result.skipped[0].kind is ProblemKind.hash_mismatch
    assert scalar(engine, "SELECT count(*) FROM audit_requests_p202610") == 3


def test_a_record_outside_every_month_waits_in_the_default_partition(engine: Engine) -> None:
    far = datetime(2031, 5, 6, tzinfo=UTC)
    chain = Chain.new(ChainKind.requests, KEY)
    write(engine, chain, [record(1, far), record(2, far + timedelta(days=40))])
    assert scalar(engine, "SELECT count(*) FROM audit_requests_default") == 2
    made = partitions.ensure_partitions(engine, now=far, ahead=0)
    assert made == ["audit_requests_p203105"]
    assert scalar(engine, "SELECT count(*) FROM audit_requests_p203105") == 1
    assert scalar(engine, "SELECT count(*) FROM audit_requests_default") == 1
    assert partitions.ensure_partitions(engine, now=far, ahead=0) == []
    assert verify(engine, key=KEY).ok


def test_upgrade_makes_the_coming_months(engine: Engine) -> None:
    now = partitions.month_start(datetime.now(UTC))
    expected = set()
    for _ in range(partitions.AHEAD + 1):
        expected.add(partitions.partition_name(now))
        now = partitions.next_month(now)
    assert expected <= names(engine)


def test_two_writers_on_one_chain_id_never_fork_it(engine: Engine) -> None:
    """The unique (chain_id, seq) no longer catches this alone (started_at is in the key):
    the head's compare-and-set turns the race into a re-link from the stored head."""
    first = Chain.new(ChainKind.requests, KEY, chain_id="replica-1")
    second = Chain.new(ChainKind.requests, KEY, chain_id="replica-1")
    write(engine, first, month_records(DEC, 2))
    write(engine, second, month_records(DEC, 2, 10))  # reads the head: seq 3, 4
    write(engine, first, [record(20, DEC + timedelta(days=3))])  # stale head at 2: re-linked at 5
    assert first.seq == 5
    result = verify(engine, key=KEY)
    assert (result.ok, result.records_checked) == (True, 5), result.problems
