"""salted commitments and erasure: request salt, texts beside the chain, erasure records

Revision ID: 0005_commitments
Revises: 0002
Create Date: 2026-12-07

New request records are hashed over salted commitments of their texts (``audit.commitments``,
format 2): ``salt`` and ``texts`` hold what the commitments stand for, ``erasure_id`` and
``erased_commits`` what an erasure leaves. Existing records keep ``salt`` null and are verified
as written (format 1), so every stored chain still verifies; nothing is rewritten.
``audit_erasures`` holds the erasure records, chained like reviews.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005_commitments'
down_revision: str | None = '0004_keys'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # add_column is in place on both backends (no table copy on SQLite)
    op.add_column('audit_requests', sa.Column('salt', sa.String(length=32), nullable=True))
    op.add_column('audit_requests', sa.Column('texts', sa.Text(), nullable=True))
    op.add_column('audit_requests', sa.Column('erasure_id', sa.String(length=64), nullable=True))
    op.add_column('audit_requests', sa.Column('erased_commits', sa.Text(), nullable=True))
    op.create_index(
        'ix_audit_requests_erasure_id', 'audit_requests', ['erasure_id'], unique=False,
        sqlite_where=sa.text('erasure_id IS NOT NULL'), postgresql_where=sa.text('erasure_id IS NOT NULL'),
    )
    op.create_table('audit_erasures',
    sa.Column('erasure_id', sa.String(length=64), nullable=False),
    sa.Column('chain_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('selector', sa.String(), nullable=False),
    sa.Column('request_ids', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('erasure_id', name=op.f('pk_audit_erasures')),
    sa.UniqueConstraint('chain_id', 'seq', name='uq_audit_erasures_chain_seq'),
    )
    op.create_index('ix_audit_erasures_at', 'audit_erasures', ['at'], unique=False)


def downgrade() -> None:
    # Records written in format 2 cannot be verified by older code; downgrading keeps their
    # rows but drops what their commitments need, so do it only on a database without them.
    op.drop_index('ix_audit_erasures_at', table_name='audit_erasures')
    op.drop_table('audit_erasures')
    op.drop_index('ix_audit_requests_erasure_id', table_name='audit_requests',
                  sqlite_where=sa.text('erasure_id IS NOT NULL'), postgresql_where=sa.text('erasure_id IS NOT NULL'))
    op.execute('ALTER TABLE audit_requests DROP COLUMN erased_commits')
    op.execute('ALTER TABLE audit_requests DROP COLUMN erasure_id')
    op.execute('ALTER TABLE audit_requests DROP COLUMN texts')
    op.execute('ALTER TABLE audit_requests DROP COLUMN salt')
