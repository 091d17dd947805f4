"""a record's steps as one document; acted steps and spans as index tables

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

``audit_steps`` (one row per step) becomes ``audit_requests.steps``: the steps in order, as
the canonical JSON the record's hash covers, so every stored chain still verifies. The steps
where a check did something move to ``audit_acted_steps``; ``audit_spans`` keeps its rows and
loses its foreign key (index rows have none: see ``audit.models``). The conversion is written here in full, not imported, so that it
keeps meaning what it meant when later code changes; ``downgrade`` turns the documents back
into rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAGE = 500
#: the canonical form of audit records (``audit.canonical``, format version 1)
_CANON = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z

_requests = sa.table('audit_requests', sa.column('request_id', sa.String()), sa.column('steps', sa.Text()))
_steps = sa.table(
    'audit_steps',
    sa.column('request_id', sa.String()),
    sa.column('seq', sa.Integer()),
    sa.column('stage', sa.String()),
    sa.column('name', sa.String()),
    sa.column('verdict', sa.String()),
    sa.column('score', sa.Double()),
    sa.column('latency_ms', sa.Double()),
    sa.column('enforced', sa.Boolean()),
    sa.column('detail', sa.JSON()),
    sa.column('text', sa.Text()),
    sa.column('at', sa.DateTime(timezone=True)),
)
_spans = sa.table(
    'audit_spans',
    sa.column('request_id', sa.String()),
    sa.column('step_seq', sa.Integer()),
    sa.column('idx', sa.Integer()),
    sa.column('entity_type', sa.String()),
    sa.column('span_start', sa.Integer()),
    sa.column('span_end', sa.Integer()),
    sa.column('score', sa.Double()),
    sa.column('fingerprint', sa.String()),
)
_STEP_KEYS = ('seq', 'stage', 'name', 'verdict', 'score', 'latency_ms', 'enforced', 'detail', 'text')


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _pages(conn: sa.Connection) -> Iterator[list[str]]:
    after = ''
    while True:
        q = sa.select(_requests.c.request_id).where(_requests.c.request_id > after)
        ids = list(conn.execute(q.order_by(_requests.c.request_id).limit(PAGE)).scalars())
        if not ids:
            return
        after = ids[-1]
        yield ids


def _documents(conn: sa.Connection, ids: list[str]) -> dict[str, bytes]:
    spans: dict[tuple[str, int], list[dict[str, Any]]] = {}
    q = sa.select(_spans).where(_spans.c.request_id.in_(ids))
    for sp in conn.execute(q.order_by(_spans.c.request_id, _spans.c.step_seq, _spans.c.idx)).mappings():
        spans.setdefault((sp['request_id'], sp['step_seq']), []).append({
            'entity_type': sp['entity_type'], 'start': sp['span_start'], 'end': sp['span_end'],
            'score': sp['score'], 'fingerprint': sp['fingerprint'],
        })  # fmt: skip
    steps: dict[str, list[dict[str, Any]]] = {rid: [] for rid in ids}
    q = sa.select(_steps).where(_steps.c.request_id.in_(ids))
    for s in conn.execute(q.order_by(_steps.c.request_id, _steps.c.seq)).mappings():
        step = {k: s[k] for k in _STEP_KEYS}
        step['at'] = _utc(s['at'])
        step['spans'] = spans.get((s['request_id'], s['seq']), [])
        steps[s['request_id']].append(step)
    return {rid: orjson.dumps(doc, option=_CANON) for rid, doc in steps.items()}


def _compress_lz4(conn: sa.Connection) -> None:
    """lz4 for the documents on PostgreSQL: ~3x cheaper to store than the default pglz."""
    if conn.dialect.name != 'postgresql':
        return
    try:
        with conn.begin_nested():
            conn.exec_driver_sql('ALTER TABLE audit_requests ALTER COLUMN steps SET COMPRESSION lz4')
    except sa.exc.DBAPIError:
        pass  # a server built without lz4 (or before PostgreSQL 14) keeps pglz


def upgrade() -> None:
    conn = op.get_bind()
    # Order matters on SQLite, where a table is altered by copying it and dropping the old one,
    # and dropping a table deletes its rows with their ON DELETE CASCADE: spans stop referring
    # to steps first, and audit_requests is only ever altered in place.
    with op.batch_alter_table('audit_spans') as batch:
        batch.drop_constraint('fk_audit_spans_step', type_='foreignkey')
    op.add_column('audit_requests', sa.Column('steps', sa.Text(), server_default='[]', nullable=False))
    _compress_lz4(conn)
    op.create_table('audit_acted_steps',
    sa.Column('request_id', sa.String(), nullable=False),
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('score', sa.Double(), nullable=True),
    sa.Column('enforced', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('request_id', 'seq', name=op.f('pk_audit_acted_steps')),
    sqlite_with_rowid=False,
    )
    op.create_index('ix_audit_acted_steps_name', 'audit_acted_steps', ['name', 'verdict', 'request_id'], unique=False)
    op.execute(
        'INSERT INTO audit_acted_steps (request_id, seq, stage, name, verdict, score, enforced) '
        "SELECT request_id, seq, stage, name, verdict, score, enforced FROM audit_steps WHERE verdict <> 'pass'"
    )
    for ids in _pages(conn):
        docs = _documents(conn, ids)
        conn.execute(
            _requests.update().where(_requests.c.request_id == sa.bindparam('rid')),
            [{'rid': rid, 'steps': doc.decode()} for rid, doc in docs.items()],
        )
    op.drop_index('ix_audit_steps_acted', table_name='audit_steps', sqlite_where=sa.text("verdict <> 'pass'"), postgresql_where=sa.text("verdict <> 'pass'"))
    op.drop_table('audit_steps')


def _rows(doc: str, rid: str) -> list[dict[str, Any]]:
    rows = []
    for s in orjson.loads(doc):
        row = {k: s[k] for k in _STEP_KEYS}
        row['request_id'] = rid
        row['at'] = None if s['at'] is None else datetime.fromisoformat(s['at'])
        rows.append(row)
    return rows


def downgrade() -> None:
    conn = op.get_bind()
    op.create_table('audit_steps',
    sa.Column('request_id', sa.String(), nullable=False),
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('score', sa.Double(), nullable=True),
    sa.Column('latency_ms', sa.Double(), nullable=False),
    sa.Column('enforced', sa.Boolean(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['audit_requests.request_id'], name=op.f('fk_audit_steps_request_id_audit_requests'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('request_id', 'seq', name=op.f('pk_audit_steps'))
    )
    op.create_index('ix_audit_steps_acted', 'audit_steps', ['name', 'verdict', 'request_id'], unique=False, sqlite_where=sa.text("verdict <> 'pass'"), postgresql_where=sa.text("verdict <> 'pass'"))
    for ids in _pages(conn):
        q = sa.select(_requests.c.request_id, _requests.c.steps).where(_requests.c.request_id.in_(ids))
        rows = [row for rid, doc in conn.execute(q) for row in _rows(doc, rid)]
        if rows:
            conn.execute(_steps.insert(), rows)
    with op.batch_alter_table('audit_spans') as batch:
        batch.create_foreign_key(
            'fk_audit_spans_step', 'audit_steps', ['request_id', 'step_seq'], ['request_id', 'seq'], ondelete='CASCADE'
        )
    op.drop_index('ix_audit_acted_steps_name', table_name='audit_acted_steps')
    op.drop_table('audit_acted_steps')
    # In place on both (SQLite 3.35+): copying audit_requests would cascade its deletion.
    op.execute('ALTER TABLE audit_requests DROP COLUMN steps')
