"""Saved policy versions, and which gateway replicas run which version (their heartbeats)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, insert, select, update

from audit.db import WRITE_OPTIONS
from audit.models import Base
from audit.read.record_filter import as_utc
from audit.rows import utc

POLICY_VERSIONS = Base.metadata.tables["policy_versions"]


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    id: int
    name: str
    version_hash: str
    yaml_text: str
    created_at: datetime
    created_by: str
    note: str | None
    #: the regression evaluation it was saved with (JSON), and an admin's reason for a weakening change
    evaluation: str | None = None
    weakening_reason: str | None = None


def _policy_version(row: Any) -> PolicyVersion:
    return PolicyVersion(
        row.id,
        row.name,
        row.version_hash,
        row.yaml_text,
        utc(row.created_at) or row.created_at,
        row.created_by,
        row.note,
        row.evaluation,
        row.weakening_reason,
    )


def policy_versions(engine: Engine, name: str, *, limit: int = 100) -> list[PolicyVersion]:
    """Saved versions of the named policy, newest first."""
    pv = POLICY_VERSIONS.c
    q = select(POLICY_VERSIONS).where(pv.name == name).order_by(pv.created_at.desc(), pv.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [_policy_version(r) for r in conn.execute(q)]


def find_policy_version(engine: Engine, name: str, version_hash: str) -> PolicyVersion | None:
    pv = POLICY_VERSIONS.c
    with engine.connect() as conn:
        row = conn.execute(select(POLICY_VERSIONS).where(pv.name == name, pv.version_hash == version_hash)).first()
    return _policy_version(row) if row is not None else None


def record_policy_version(
    engine: Engine,
    *,
    name: str,
    version_hash: str,
    yaml_text: str,
    created_by: str,
    note: str | None,
    evaluation: str | None = None,
    weakening_reason: str | None = None,
) -> tuple[PolicyVersion, bool]:
    """Store a policy text as a version unless that exact text is stored; (version, created).

    Saving a stored text again (a rollback) keeps its row; a new admin reason for letting known
    attacks through, and the evaluation it was given on, are added to that row.
    """

    pv = POLICY_VERSIONS.c
    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        row = conn.execute(select(POLICY_VERSIONS).where(pv.name == name, pv.version_hash == version_hash)).first()
        if row is not None:
            if weakening_reason:
                conn.execute(
                    update(POLICY_VERSIONS)
                    .where(pv.id == row.id)
                    .values(weakening_reason=weakening_reason, evaluation=evaluation)
                )
                row = conn.execute(select(POLICY_VERSIONS).where(pv.id == row.id)).one()
            return _policy_version(row), False
        conn.execute(
            insert(POLICY_VERSIONS).values(
                name=name,
                version_hash=version_hash,
                yaml_text=yaml_text,
                created_at=datetime.now(UTC),
                created_by=created_by,
                note=note,
                evaluation=evaluation,
                weakening_reason=weakening_reason,
            )
        )
        row = conn.execute(select(POLICY_VERSIONS).where(pv.name == name, pv.version_hash == version_hash)).one()
    return _policy_version(row), True


# -- gateway replicas ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replica:
    replica_id: str
    host: str
    pid: int
    started_at: datetime
    last_seen: datetime
    #: policy file name -> {"name", "version"}
    policies: dict[str, dict[str, str]]

    def runs(self, policy_name: str) -> str | None:
        """The version of ``policy_name`` this replica runs, if it runs that policy."""
        for p in self.policies.values():
            if p.get("name") == policy_name:
                return p.get("version")
        return None


def replicas(engine: Engine, *, seen_since: datetime) -> list[Replica]:
    """Gateway replicas whose heartbeat is newer than ``seen_since`` (``gateway.heartbeat``)."""
    t = Base.metadata.tables["gateway_replicas"]
    q = select(t).where(t.c.last_seen >= as_utc(seen_since)).order_by(t.c.host, t.c.pid)
    out = []
    with engine.connect() as conn:
        for r in conn.execute(q):
            try:
                policies = orjson.loads(r.policies)
            except orjson.JSONDecodeError:
                policies = {}
            out.append(
                Replica(
                    r.replica_id,
                    r.host,
                    r.pid,
                    utc(r.started_at) or r.started_at,
                    utc(r.last_seen) or r.last_seen,
                    policies if isinstance(policies, dict) else {},
                )
            )
    return out
