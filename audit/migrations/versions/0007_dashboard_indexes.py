"""dashboard indexes: a covering time index on requests, check names with their stage, monitor steps

Revision ID: 0007_dashboard_indexes
Revises: 0006_partitions
Create Date: 2026-12-07

With 100,000 stored requests the dashboard's overview read every row in the time range from
the table (each row holds the record's steps and texts) to count verdicts, sum tokens and sort
latencies, which took seconds. ``ix_audit_requests_started_cover`` replaces the plain
``started_at`` index with one that also holds the columns those queries read, so they are
index-only; ``ix_audit_requests_verdict_started`` gains the request id, so the review queue's
count and page are too. ``ix_audit_acted_steps_name`` gains the stage and ``enforced``, so the
check-name choices and the top checks' counts are read from the index alone, in group order; ``ix_audit_acted_steps_monitor`` holds only monitor-mode steps (usually none),
so counting what they would have done no longer walks every acted step in the range.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007_dashboard_indexes'
down_revision: str | None = '0006_partitions'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COVER = [
    'started_at', 'verdict', 'tenant', 'model_requested', 'policy_name', 'policy_version', 'seq',
    'latency_ms', 'ttft_ms', 'prompt_tokens', 'completion_tokens', 'request_id',
]


def upgrade() -> None:
    op.create_index('ix_audit_requests_started_cover', 'audit_requests', COVER, unique=False)
    op.drop_index('ix_audit_requests_started_at', table_name='audit_requests')
    op.drop_index('ix_audit_requests_verdict_started', table_name='audit_requests')
    op.create_index(
        'ix_audit_requests_verdict_started', 'audit_requests', ['verdict', 'started_at', 'request_id'], unique=False
    )
    op.drop_index('ix_audit_acted_steps_name', table_name='audit_acted_steps')
    op.create_index(
        'ix_audit_acted_steps_name', 'audit_acted_steps', ['name', 'stage', 'verdict', 'enforced', 'request_id'],
        unique=False,
    )
    op.create_index(
        'ix_audit_acted_steps_monitor', 'audit_acted_steps', ['request_id'], unique=False,
        sqlite_where=sa.text('enforced = 0'), postgresql_where=sa.text('enforced = false'),
    )


def downgrade() -> None:
    op.drop_index('ix_audit_acted_steps_monitor', table_name='audit_acted_steps')
    op.drop_index('ix_audit_acted_steps_name', table_name='audit_acted_steps')
    op.create_index('ix_audit_acted_steps_name', 'audit_acted_steps', ['name', 'verdict', 'request_id'], unique=False)
    op.drop_index('ix_audit_requests_verdict_started', table_name='audit_requests')
    op.create_index('ix_audit_requests_verdict_started', 'audit_requests', ['verdict', 'started_at'], unique=False)
    op.create_index('ix_audit_requests_started_at', 'audit_requests', ['started_at'], unique=False)
    op.drop_index('ix_audit_requests_started_cover', table_name='audit_requests')
