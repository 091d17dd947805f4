"""initial audit schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_chains',
    sa.Column('chain_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('algorithm', sa.String(length=16), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=True),
    sa.Column('host', sa.String(), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('head_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('chain_id', name=op.f('pk_audit_chains'))
    )
    op.create_table('audit_checkpoints',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('chain_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('pruned_before', sa.DateTime(timezone=True), nullable=False),
    sa.Column('records_pruned', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_checkpoints'))
    )
    op.create_index('ix_audit_checkpoints_chain_seq', 'audit_checkpoints', ['chain_id', 'seq'], unique=False)

    op.create_table('audit_requests',
    sa.Column('request_id', sa.String(), nullable=False),
    sa.Column('chain_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('tenant', sa.String(), nullable=False),
    sa.Column('key_id', sa.String(), nullable=False),
    sa.Column('client_addr', sa.String(), nullable=True),
    sa.Column('endpoint', sa.String(), nullable=False),
    sa.Column('model_requested', sa.String(), nullable=False),
    sa.Column('model_served', sa.String(), nullable=True),
    sa.Column('stream', sa.Boolean(), nullable=False),
    sa.Column('policy_name', sa.String(), nullable=False),
    sa.Column('policy_version', sa.String(), nullable=False),
    sa.Column('input_text', sa.Text(), nullable=True),
    sa.Column('output_text', sa.Text(), nullable=True),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=False),
    sa.Column('finish_reason', sa.String(), nullable=True),
    sa.Column('prompt_tokens', sa.Integer(), nullable=True),
    sa.Column('completion_tokens', sa.Integer(), nullable=True),
    sa.Column('latency_ms', sa.Double(), nullable=True),
    sa.Column('ttft_ms', sa.Double(), nullable=True),
    sa.Column('trace_id', sa.String(length=32), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('request_id', name=op.f('pk_audit_requests')),
    sa.UniqueConstraint('chain_id', 'seq', name='uq_audit_requests_chain_seq')
    )
    op.create_index('ix_audit_requests_model_started', 'audit_requests', ['model_requested', 'started_at'], unique=False)
    op.create_index('ix_audit_requests_policy_started', 'audit_requests', ['policy_version', 'started_at'], unique=False)
    op.create_index('ix_audit_requests_started_at', 'audit_requests', ['started_at'], unique=False)
    op.create_index('ix_audit_requests_tenant_started', 'audit_requests', ['tenant', 'started_at'], unique=False)
    op.create_index('ix_audit_requests_trace_id', 'audit_requests', ['trace_id'], unique=False)
    op.create_index('ix_audit_requests_verdict_started', 'audit_requests', ['verdict', 'started_at'], unique=False)

    op.create_table('audit_reviews',
    sa.Column('review_id', sa.String(length=64), nullable=False),
    sa.Column('chain_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('request_id', sa.String(), nullable=False),
    sa.Column('reviewer', sa.String(), nullable=False),
    sa.Column('ruling', sa.Enum('confirm', 'false_positive', 'escalate', name='ruling', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('review_id', name=op.f('pk_audit_reviews')),
    sa.UniqueConstraint('chain_id', 'seq', name='uq_audit_reviews_chain_seq')
    )
    op.create_index('ix_audit_reviews_at', 'audit_reviews', ['at'], unique=False)
    op.create_index('ix_audit_reviews_request_id', 'audit_reviews', ['request_id'], unique=False)

    op.create_table('policy_versions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('version_hash', sa.String(length=128), nullable=False),
    sa.Column('yaml_text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policy_versions')),
    sa.UniqueConstraint('name', 'version_hash', name='uq_policy_versions_name_hash')
    )
    op.create_index('ix_policy_versions_name_created', 'policy_versions', ['name', 'created_at'], unique=False)
    op.create_index('ix_policy_versions_version_hash', 'policy_versions', ['version_hash'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('role', sa.Enum('viewer', 'reviewer', 'admin', name='role', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('password_hash', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('name', name=op.f('uq_users_name'))
    )
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

    op.create_table('audit_spans',
    sa.Column('request_id', sa.String(), nullable=False),
    sa.Column('step_seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('idx', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('entity_type', sa.String(), nullable=False),
    sa.Column('span_start', sa.Integer(), nullable=False),
    sa.Column('span_end', sa.Integer(), nullable=False),
    sa.Column('score', sa.Double(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['request_id', 'step_seq'], ['audit_steps.request_id', 'audit_steps.seq'], name='fk_audit_spans_step', ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('request_id', 'step_seq', 'idx', name=op.f('pk_audit_spans'))
    )
    op.create_index('ix_audit_spans_fingerprint', 'audit_spans', ['fingerprint'], unique=False, sqlite_where=sa.text('fingerprint IS NOT NULL'), postgresql_where=sa.text('fingerprint IS NOT NULL'))



def downgrade() -> None:
    op.drop_index('ix_audit_spans_fingerprint', table_name='audit_spans', sqlite_where=sa.text('fingerprint IS NOT NULL'), postgresql_where=sa.text('fingerprint IS NOT NULL'))

    op.drop_table('audit_spans')
    op.drop_index('ix_audit_steps_acted', table_name='audit_steps', sqlite_where=sa.text("verdict <> 'pass'"), postgresql_where=sa.text("verdict <> 'pass'"))

    op.drop_table('audit_steps')
    op.drop_table('users')
    op.drop_index('ix_policy_versions_version_hash', table_name='policy_versions')
    op.drop_index('ix_policy_versions_name_created', table_name='policy_versions')

    op.drop_table('policy_versions')
    op.drop_index('ix_audit_reviews_request_id', table_name='audit_reviews')
    op.drop_index('ix_audit_reviews_at', table_name='audit_reviews')

    op.drop_table('audit_reviews')
    op.drop_index('ix_audit_requests_verdict_started', table_name='audit_requests')
    op.drop_index('ix_audit_requests_trace_id', table_name='audit_requests')
    op.drop_index('ix_audit_requests_tenant_started', table_name='audit_requests')
    op.drop_index('ix_audit_requests_started_at', table_name='audit_requests')
    op.drop_index('ix_audit_requests_policy_started', table_name='audit_requests')
    op.drop_index('ix_audit_requests_model_started', table_name='audit_requests')

    op.drop_table('audit_requests')
    op.drop_index('ix_audit_checkpoints_chain_seq', table_name='audit_checkpoints')

    op.drop_table('audit_checkpoints')
    op.drop_table('audit_chains')
