"""API keys in the database, and policy activations, for fleets that edit no files

Revision ID: 0004_keys
Revises: 0002
Create Date: 2026-12-07

``api_keys`` holds keys made through the admin API or ``warden keys create --db`` (SHA-256
only) and revocations of config-file keys; ``policy_activations`` is the append-only log of
which stored policy version is in force, which every replica polls.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004_keys'
down_revision: str | None = '0003_replicas'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('key_sha256', sa.String(length=64), nullable=False),
    sa.Column('tenant', sa.String(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('policy', sa.String(), nullable=True),
    sa.Column('rpm', sa.Integer(), nullable=True),
    sa.Column('tpm', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_by', sa.String(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('key_id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_sha256', name=op.f('uq_api_keys_key_sha256'))
    )
    op.create_index('ix_api_keys_updated_at', 'api_keys', ['updated_at'], unique=False)
    op.create_table('policy_activations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('version_hash', sa.String(length=128), nullable=False),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('activated_by', sa.String(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policy_activations'))
    )
    op.create_index('ix_policy_activations_name_id', 'policy_activations', ['name', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_policy_activations_name_id', table_name='policy_activations')
    op.drop_table('policy_activations')
    op.drop_index('ix_api_keys_updated_at', table_name='api_keys')
    op.drop_table('api_keys')
