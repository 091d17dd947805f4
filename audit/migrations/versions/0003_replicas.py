"""gateway replica heartbeats, dashboard sessions, policy versions' evaluation and reason

Revision ID: 0003_replicas
Revises: 0002
Create Date: 2026-12-07

``gateway_replicas``: each gateway process upserts which policy versions it runs, so the
dashboard shows when every replica has picked up a saved version. ``dashboard_sessions``: a
login's server-side half (the cookie holds a signed id), so logging out ends it everywhere.
``policy_versions`` gains the regression evaluation a version was saved with and an admin's
written reason when it lets known attacks through.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003_replicas'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'gateway_replicas',
        sa.Column('replica_id', sa.String(length=64), nullable=False),
        sa.Column('host', sa.String(), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
        sa.Column('policies', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('replica_id', name=op.f('pk_gateway_replicas')),
    )
    op.create_index('ix_gateway_replicas_last_seen', 'gateway_replicas', ['last_seen'], unique=False)
    op.create_table(
        'dashboard_sessions',
        sa.Column('id_hash', sa.String(length=64), nullable=False),
        sa.Column('user_name', sa.String(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id_hash', name=op.f('pk_dashboard_sessions')),
    )
    op.create_index('ix_dashboard_sessions_user', 'dashboard_sessions', ['user_name'], unique=False)
    with op.batch_alter_table('policy_versions') as batch:
        batch.add_column(sa.Column('evaluation', sa.Text(), nullable=True))
        batch.add_column(sa.Column('weakening_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('policy_versions') as batch:
        batch.drop_column('weakening_reason')
        batch.drop_column('evaluation')
    op.drop_index('ix_dashboard_sessions_user', table_name='dashboard_sessions')
    op.drop_table('dashboard_sessions')
    op.drop_index('ix_gateway_replicas_last_seen', table_name='gateway_replicas')
    op.drop_table('gateway_replicas')
