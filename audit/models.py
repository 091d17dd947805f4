"""The audit tables, as SQLAlchemy 2 typed models.

Alembic migrations (``audit/migrations``) create these; ``tests/audit/test_audit_models.py`` checks
that the models and the migrations agree. Inserts on the hot path go through SQLAlchemy Core
(``audit.write.store``), queries may use either.

Choices worth knowing:

* Timestamps are stored in UTC. SQLite keeps them naive; readers treat naive as UTC.
* A record's steps are one document: ``audit_requests.steps`` holds them, in order, as the
  exact canonical JSON their hash covers. It is ``Text``, not ``JSON``/``JSONB``: JSONB
  rewrites numbers (``1e20`` comes back as an integer), and verify hashes the document as
  stored, so it must come back byte for byte. A request
  has ~20 steps; as rows they cost the database ~20 inserts, index entries and foreign-key
  checks per request, which held the writer to a third of its target on PostgreSQL.
  Reading a request back is one row, too.
* What SQL must find by step lives in two small index tables, derived from that document in
  the same transaction: ``audit_acted_steps`` (the steps where a check did something,
  verdict other than ``pass``: what the dashboard's "check" filter and statistics ask for)
  and ``audit_spans`` (where a check acted inside a text, with the value's keyed
  fingerprint). ``warden audit verify`` holds both to the document, so an edited index row
  is found like an edited record, and reports index rows whose request is not stored. They
  carry no foreign key: PostgreSQL checks one by locking the request's row, which cost more
  than writing the index row itself; ``prune`` deletes them with their request.
* On PostgreSQL ``audit_requests`` is partitioned by month on ``started_at`` (migration
  ``0006_partitions``, ``audit.partitions``): there its primary key is ``(request_id,
  started_at)`` and its chain key ``(chain_id, seq, started_at)``. These models describe the
  SQLite table; ``tests/audit/test_audit_models.py`` allows exactly that difference.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Double,
    Enum,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from audit.canonical import step_from_obj
from audit.commitments import plain_steps
from audit.record import Ruling, StepRecord

HASH_LEN = 64

#: Constraint names are fixed so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Role(StrEnum):
    viewer = "viewer"
    reviewer = "reviewer"
    admin = "admin"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: DateTime(timezone=True),
        str: String(),
        int: Integer(),
        float: Double(),
    }


class ChainRow(Base):
    """One hash chain: owned by one writer (one gateway process) for its lifetime.

    ``last_seq`` / ``head_hash`` move in the same transaction as the records, so verify can
    tell a chain whose newest records were deleted from one that simply ended.
    """

    __tablename__ = "audit_chains"

    chain_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    algorithm: Mapped[str] = mapped_column(String(16))
    key_id: Mapped[str | None] = mapped_column(String(32))
    host: Mapped[str]
    pid: Mapped[int]
    started_at: Mapped[datetime]
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    head_hash: Mapped[str] = mapped_column(String(HASH_LEN))


class RequestRow(Base):
    __tablename__ = "audit_requests"
    __table_args__ = (
        UniqueConstraint("chain_id", "seq", name="uq_audit_requests_chain_seq"),
        # Covering: the overview's counts, token sums and percentiles and the filter choices
        # read a time range from this index alone, never the wide rows (steps, texts).
        Index(
            "ix_audit_requests_started_cover",
            "started_at",
            "verdict",
            "tenant",
            "model_requested",
            "policy_name",
            "policy_version",
            "seq",
            "latency_ms",
            "ttft_ms",
            "prompt_tokens",
            "completion_tokens",
            "request_id",
        ),
        Index("ix_audit_requests_tenant_started", "tenant", "started_at"),
        Index("ix_audit_requests_model_started", "model_requested", "started_at"),
        # with the id: the review queue's count and page (and their not-yet-ruled test) are index-only
        Index("ix_audit_requests_verdict_started", "verdict", "started_at", "request_id"),
        Index("ix_audit_requests_policy_started", "policy_version", "started_at"),
        Index("ix_audit_requests_trace_id", "trace_id"),
        Index(
            "ix_audit_requests_erasure_id",
            "erasure_id",
            sqlite_where=text("erasure_id IS NOT NULL"),
            postgresql_where=text("erasure_id IS NOT NULL"),
        ),
    )

    request_id: Mapped[str] = mapped_column(String(), primary_key=True)
    chain_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str] = mapped_column(String(HASH_LEN))
    hash: Mapped[str] = mapped_column(String(HASH_LEN))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    tenant: Mapped[str]
    key_id: Mapped[str]
    client_addr: Mapped[str | None]
    endpoint: Mapped[str]
    model_requested: Mapped[str]
    model_served: Mapped[str | None]
    stream: Mapped[bool] = mapped_column(Boolean)
    policy_name: Mapped[str]
    policy_version: Mapped[str]
    input_text: Mapped[str | None] = mapped_column(Text)
    output_text: Mapped[str | None] = mapped_column(Text)
    verdict: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32))
    http_status: Mapped[int]
    finish_reason: Mapped[str | None]
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    latency_ms: Mapped[float | None]
    ttft_ms: Mapped[float | None]
    trace_id: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)

    #: every step, in order, as canonical JSON (see the module docstring); in format 2
    #: (``audit.commitments``) with commitments in place of step texts and fingerprints
    steps: Mapped[str] = mapped_column(Text, server_default="[]")
    #: format 2: the record's commitment salt (hex); null once erased, and on older records
    salt: Mapped[str | None] = mapped_column(String(32))
    #: format 2: step texts and span fingerprints, ``{"t": {...}, "f": {...}}``
    texts: Mapped[str | None] = mapped_column(Text)
    #: set when the texts were erased: the erasure record (``audit_erasures``)
    erasure_id: Mapped[str | None] = mapped_column(String(64))
    #: the input and output commitments kept when the texts were erased (JSON)
    erased_commits: Mapped[str | None] = mapped_column(Text)

    acted_steps: Mapped[list[ActedStepRow]] = relationship(
        primaryjoin="RequestRow.request_id == foreign(ActedStepRow.request_id)",
        order_by="ActedStepRow.seq",
        viewonly=True,
    )
    spans: Mapped[list[SpanRow]] = relationship(
        primaryjoin="RequestRow.request_id == foreign(SpanRow.request_id)",
        order_by="[SpanRow.step_seq, SpanRow.idx]",
        viewonly=True,
    )

    def step_records(self) -> list[StepRecord]:
        """The steps, typed, in order."""
        steps = orjson.loads(self.steps)
        if self.salt is not None or self.erasure_id is not None:
            steps = plain_steps(steps, self.texts)
        return [step_from_obj(s) for s in steps]


class ActedStepRow(Base):
    """A step where a check did something (verdict other than ``pass``): an index row.

    The step itself, with its detail and text, is in ``RequestRow.steps``.
    """

    __tablename__ = "audit_acted_steps"
    __table_args__ = (
        # every column the overview's "top checks" groups by, in that order, then the id: it is
        # counted from this index alone, already in group order (``dashboard.data``)
        Index("ix_audit_acted_steps_name", "name", "stage", "verdict", "enforced", "request_id"),
        # steps of monitor-mode checks, usually none: the overview's "would have" counts
        Index(
            "ix_audit_acted_steps_monitor",
            "request_id",
            sqlite_where=text("enforced = 0"),
            postgresql_where=text("enforced = false"),
        ),
        # small rows under a composite key: one b-tree fewer per row on SQLite
        {"sqlite_with_rowid": False},
    )

    request_id: Mapped[str] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    stage: Mapped[str] = mapped_column(String(16))
    name: Mapped[str]
    verdict: Mapped[str] = mapped_column(String(16))
    score: Mapped[float | None]
    enforced: Mapped[bool] = mapped_column(Boolean)


class SpanRow(Base):
    """Where a check acted inside a step's text: never the value, at most its fingerprint."""

    __tablename__ = "audit_spans"
    __table_args__ = (
        Index(
            "ix_audit_spans_fingerprint",
            "fingerprint",
            sqlite_where=text("fingerprint IS NOT NULL"),
            postgresql_where=text("fingerprint IS NOT NULL"),
        ),
    )

    request_id: Mapped[str] = mapped_column(primary_key=True)
    step_seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    entity_type: Mapped[str]
    span_start: Mapped[int]
    span_end: Mapped[int]
    score: Mapped[float]
    fingerprint: Mapped[str | None] = mapped_column(String(64))


class ReviewRow(Base):
    """A reviewer's ruling on a request; chained like request records, in its own chain."""

    __tablename__ = "audit_reviews"
    __table_args__ = (
        UniqueConstraint("chain_id", "seq", name="uq_audit_reviews_chain_seq"),
        Index("ix_audit_reviews_request_id", "request_id"),
        Index("ix_audit_reviews_at", "at"),
    )

    review_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    chain_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str] = mapped_column(String(HASH_LEN))
    hash: Mapped[str] = mapped_column(String(HASH_LEN))
    request_id: Mapped[str]
    reviewer: Mapped[str]
    ruling: Mapped[str] = mapped_column(
        Enum(
            Ruling,
            native_enum=False,
            length=16,
            create_constraint=True,
            name="ruling",
            values_callable=lambda e: [m.value for m in e],
        )
    )
    note: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]


class ErasureRow(Base):
    """Texts erased from request records: who, when, why, which records; chained."""

    __tablename__ = "audit_erasures"
    __table_args__ = (
        UniqueConstraint("chain_id", "seq", name="uq_audit_erasures_chain_seq"),
        Index("ix_audit_erasures_at", "at"),
    )

    erasure_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    chain_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str] = mapped_column(String(HASH_LEN))
    hash: Mapped[str] = mapped_column(String(HASH_LEN))
    at: Mapped[datetime]
    actor: Mapped[str]
    #: request | tenant | subject | retention
    scope: Mapped[str] = mapped_column(String(16))
    #: the request id, tenant or subject fingerprint asked for
    selector: Mapped[str]
    #: the request ids erased, as a JSON list (at most one batch)
    request_ids: Mapped[str] = mapped_column(Text)


class CheckpointRow(Base):
    """Left by prune: records up to ``seq`` of a chain were removed; ``hash`` was the last one's.

    ``mac`` binds the fields under the audit key, so with ``WARDEN_AUDIT_KEY`` set a forged
    checkpoint cannot hide deleted records.
    """

    __tablename__ = "audit_checkpoints"
    __table_args__ = (Index("ix_audit_checkpoints_chain_seq", "chain_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    chain_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(HASH_LEN))
    pruned_before: Mapped[datetime]
    records_pruned: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    mac: Mapped[str] = mapped_column(String(HASH_LEN))


class UserRow(Base):
    """A dashboard login."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(), unique=True)
    role: Mapped[str] = mapped_column(
        Enum(
            Role,
            native_enum=False,
            length=16,
            create_constraint=True,
            name="role",
            values_callable=lambda e: [m.value for m in e],
        )
    )
    #: argon2id hash (argon2-cffi ``PasswordHasher``); never the password
    password_hash: Mapped[str]
    created_at: Mapped[datetime]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class PolicyVersionRow(Base):
    """A saved policy text; ``version_hash`` is the content hash audit records refer to."""

    __tablename__ = "policy_versions"
    __table_args__ = (
        UniqueConstraint("name", "version_hash", name="uq_policy_versions_name_hash"),
        Index("ix_policy_versions_name_created", "name", "created_at"),
        Index("ix_policy_versions_version_hash", "version_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str]
    version_hash: Mapped[str] = mapped_column(String(128))
    yaml_text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    created_by: Mapped[str]
    note: Mapped[str | None] = mapped_column(Text)
    #: the regression evaluation the version was saved with (JSON: before/after per category and check)
    evaluation: Mapped[str | None] = mapped_column(Text)
    #: an admin's written reason for saving a change that lets known attacks through
    weakening_reason: Mapped[str | None] = mapped_column(Text)


class ApiKeyRow(Base):
    """An API key managed through the admin API or ``warden keys``: only its SHA-256 is kept.

    Rows are never deleted: a revoked key keeps its row (``revoked_at``), so the audit trail's
    ``key_id`` always names a known key. A row with ``source = 'config'`` only revokes a key
    that a config file defines, so a leaked key is shut off fleet-wide without file edits.
    ``updated_at`` moves on every change; replicas poll ``count(*)`` and ``max(updated_at)``
    (an index-only read) and reload the rows only when either moved.
    """

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_updated_at", "updated_at"),)

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_sha256: Mapped[str] = mapped_column(String(HASH_LEN), unique=True)
    tenant: Mapped[str]
    role: Mapped[str] = mapped_column(String(16))
    #: a policy *name* (one the gateways load); None: the gateway's default policy
    policy: Mapped[str | None]
    rpm: Mapped[int | None]
    tpm: Mapped[int | None]
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    created_by: Mapped[str]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None]
    updated_at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text)


class PolicyActivationRow(Base):
    """A policy version made the running one (admin API, ``warden policy activate``, dashboard).

    Append-only: the newest row per policy name is in force; replicas read rows with an ``id``
    above the last one they saw (one index probe per poll).
    """

    __tablename__ = "policy_activations"
    __table_args__ = (Index("ix_policy_activations_name_id", "name", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    name: Mapped[str]
    version_hash: Mapped[str] = mapped_column(String(128))
    activated_at: Mapped[datetime]
    activated_by: Mapped[str]
    note: Mapped[str | None] = mapped_column(Text)


class ReplicaRow(Base):
    """A gateway process's heartbeat: which policy versions it runs, and when it last said so.

    Each replica upserts its own row every few seconds, so the dashboard can show when every
    replica has picked up a saved version. A row whose ``last_seen`` is old is a stopped replica.
    """

    __tablename__ = "gateway_replicas"
    __table_args__ = (Index("ix_gateway_replicas_last_seen", "last_seen"),)

    replica_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str]
    pid: Mapped[int]
    started_at: Mapped[datetime]
    last_seen: Mapped[datetime]
    #: JSON object: policy file name -> {"name": policy name, "version": content hash}
    policies: Mapped[str] = mapped_column(Text)


class DashboardSessionRow(Base):
    """A dashboard login, server side: the cookie carries only a signed id (its hash is stored here).

    Logging out sets ``ended_at``, so a copied cookie stops working at once.
    """

    __tablename__ = "dashboard_sessions"
    __table_args__ = (Index("ix_dashboard_sessions_user", "user_name"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str]
    created_at: Mapped[datetime]
    last_seen: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
