"""PostgreSQL: audit_requests partitioned by month on started_at (SQLite: nothing changes)

Revision ID: 0006_partitions
Revises: 0005_commitments
Create Date: 2026-12-07

On PostgreSQL only (``audit.partitions`` says why and how it is used):

1. ``audit_requests_new`` is made ``LIKE audit_requests`` (same columns, defaults, not-null),
   ``PARTITION BY RANGE (started_at)``, with one partition per UTC month from the oldest stored
   record's month to three months ahead (``audit_requests_pYYYYMM``) and a default partition
   (``audit_requests_default``);
2. every row is copied over, the old table dropped (its indexes with it) and the new one renamed
   ``audit_requests``;
3. the keys and indexes are made again, on the parent (so on every partition): primary key
   ``pk_audit_requests`` ``(request_id, started_at)`` and unique ``uq_audit_requests_chain_seq``
   ``(chain_id, seq, started_at)`` (PostgreSQL requires the partition key in both), and every
   other index the table had, by its own definition read from ``pg_indexes`` before the copy
   (the seven ``ix_audit_requests_*`` of 0005, and any a migration before this one added).

No other table changes (the index tables, reviews, erasures, chains and checkpoints stay as they
are), no row is rewritten, every chain verifies as before. The copy takes the table's lock for
its duration: on a large trail, run it in a maintenance window. Downgrade does the reverse.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from alembic import op
from sqlalchemy import Connection

revision: str = '0006_partitions'
down_revision: str | None = '0005_commitments'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AHEAD = 3

def _index_definitions(bind: Connection) -> list[str]:
    """``CREATE INDEX`` statements of audit_requests' indexes other than its keys' own."""
    rows = bind.exec_driver_sql(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'audit_requests' "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'audit_requests'::regclass) "
        "ORDER BY indexname"
    )
    return [str(r[0]) for r in rows]


def _month(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    return datetime(value.year, value.month, 1, tzinfo=UTC)


def _next(lo: datetime) -> datetime:
    return datetime(lo.year + lo.month // 12, lo.month % 12 + 1, 1, tzinfo=UTC)


def _lit(value: datetime) -> str:
    return f"'{value:%Y-%m-%d %H:%M:%S}+00'"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    oldest = bind.exec_driver_sql('SELECT min(started_at) FROM audit_requests').scalar()
    now = _month(datetime.now(UTC))
    lo = _month(oldest) if oldest is not None and _month(oldest) < now else now
    last = now
    for _ in range(AHEAD):
        last = _next(last)
    indexes = _index_definitions(bind)
    op.execute(
        'CREATE TABLE audit_requests_new (LIKE audit_requests INCLUDING DEFAULTS) PARTITION BY RANGE (started_at)'
    )
    while lo <= last:
        hi = _next(lo)
        op.execute(
            f'CREATE TABLE audit_requests_p{lo:%Y%m} PARTITION OF audit_requests_new '
            f'FOR VALUES FROM ({_lit(lo)}) TO ({_lit(hi)})'
        )
        lo = hi
    op.execute('CREATE TABLE audit_requests_default PARTITION OF audit_requests_new DEFAULT')
    op.execute('INSERT INTO audit_requests_new SELECT * FROM audit_requests')
    op.execute('DROP TABLE audit_requests')
    op.execute('ALTER TABLE audit_requests_new RENAME TO audit_requests')
    op.execute('ALTER TABLE audit_requests ADD CONSTRAINT pk_audit_requests PRIMARY KEY (request_id, started_at)')
    op.execute(
        'ALTER TABLE audit_requests ADD CONSTRAINT uq_audit_requests_chain_seq UNIQUE (chain_id, seq, started_at)'
    )
    for ddl in indexes:
        op.execute(ddl)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    indexes = _index_definitions(bind)
    op.execute('CREATE TABLE audit_requests_plain (LIKE audit_requests INCLUDING DEFAULTS)')
    op.execute('INSERT INTO audit_requests_plain SELECT * FROM audit_requests')
    op.execute('DROP TABLE audit_requests')  # its partitions with it
    op.execute('ALTER TABLE audit_requests_plain RENAME TO audit_requests')
    op.execute('ALTER TABLE audit_requests ADD CONSTRAINT pk_audit_requests PRIMARY KEY (request_id)')
    op.execute('ALTER TABLE audit_requests ADD CONSTRAINT uq_audit_requests_chain_seq UNIQUE (chain_id, seq)')
    for ddl in indexes:
        op.execute(ddl.replace(' ON ONLY ', ' ON '))
