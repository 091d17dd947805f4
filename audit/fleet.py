"""What a fleet of gateways shares through the database: API keys and active policy versions.

All queries the admin API, ``warden keys`` / ``warden policy activate`` and the replicas'
poller (``gateway.fleet``) run live here. Keys are stored as SHA-256 only; the secret is
returned once by ``create_key`` and never again.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from audit.db import WRITE_OPTIONS
from audit.models import ApiKeyRow, Base, PolicyActivationRow, PolicyVersionRow

KEYS = Base.metadata.tables[ApiKeyRow.__tablename__]
ACTIVATIONS = Base.metadata.tables[PolicyActivationRow.__tablename__]
VERSIONS = Base.metadata.tables[PolicyVersionRow.__tablename__]
ROLES = ("client", "reviewer", "admin")
SECRET_PREFIX = "sk-warden-"  # noqa: S105 - a prefix, not a secret


class FleetError(ValueError):
    """A request the database state does not allow (a taken id, an unknown version, ...)."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    key_sha256: str
    tenant: str
    role: str
    policy: str | None
    rpm: int | None
    tpm: int | None
    source: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str | None
    note: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict[str, Any]:
        """The key as the admin API shows it: never the digest, never the secret."""
        return {
            "id": self.key_id,
            "object": "api_key",
            "tenant": self.tenant,
            "role": self.role,
            "policy": self.policy,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "source": "database" if self.source == "api" else self.source,
            "created_at": _iso(self.created_at),
            "created_by": self.created_by,
            "revoked_at": _iso(self.revoked_at),
            "revoked_by": self.revoked_by,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Activation:
    id: int
    name: str
    version_hash: str
    activated_at: datetime
    activated_by: str
    note: str | None


@dataclass(frozen=True, slots=True)
class StoredVersion:
    name: str
    version_hash: str
    yaml_text: str
    created_at: datetime
    created_by: str
    note: str | None


def _iso(value: datetime | None) -> str | None:
    return _utc(value).isoformat() if value is not None else None


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value  # SQLite keeps them naive


def _key(row: Any) -> KeyRecord:
    return KeyRecord(
        row.key_id,
        row.key_sha256,
        row.tenant,
        row.role,
        row.policy,
        row.rpm,
        row.tpm,
        row.source,
        _utc(row.created_at),
        row.created_by,
        _utc(row.revoked_at) if row.revoked_at is not None else None,
        row.revoked_by,
        row.note,
    )


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


# -- keys ----------------------------------------------------------------------------------


def create_key(
    engine: Engine,
    *,
    tenant: str,
    role: str = "client",
    policy: str | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    key_id: str | None = None,
    created_by: str,
    note: str | None = None,
    taken_digests: frozenset[str] = frozenset(),
    taken_ids: frozenset[str] = frozenset(),
) -> tuple[str, KeyRecord]:
    """A new key: (the secret, shown once; its stored record). ``taken_*`` are the config
    file's keys, which share the id and digest space."""
    if role not in ROLES:
        raise FleetError(f"role must be one of {', '.join(ROLES)}")
    kid = key_id or "key_" + secrets.token_hex(6)
    if kid in taken_ids:
        raise FleetError(f"a key with id {kid!r} exists")
    secret = new_secret()
    hexdigest = digest(secret)
    if hexdigest in taken_digests:  # pragma: no cover - 256 random bits
        raise FleetError("key collision; try again")
    now = datetime.now(UTC)
    values = {
        "key_id": kid,
        "key_sha256": hexdigest,
        "tenant": tenant,
        "role": role,
        "policy": policy,
        "rpm": rpm,
        "tpm": tpm,
        "source": "api",
        "created_at": now,
        "created_by": created_by,
        "revoked_at": None,
        "revoked_by": None,
        "updated_at": now,
        "note": note,
    }
    try:
        with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
            conn.execute(insert(KEYS).values(**values))
            row = conn.execute(select(KEYS).where(KEYS.c.key_id == kid)).one()
    except IntegrityError:
        raise FleetError(f"a key with id {kid!r} exists") from None
    return secret, _key(row)


def revoke_key(
    engine: Engine, key_id: str, *, by: str, config_key: tuple[str, str, str] | None = None
) -> KeyRecord | None:
    """Revoke a database key, or (``config_key`` = digest, tenant, role) shut off a config
    file's key everywhere. None when there is no such key. Revoking twice keeps the first time."""
    now = datetime.now(UTC)
    k = KEYS.c
    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        row = conn.execute(select(KEYS).where(k.key_id == key_id)).first()
        if row is None and config_key is not None:
            hexdigest, tenant, role = config_key
            conn.execute(
                insert(KEYS).values(
                    key_id=key_id,
                    key_sha256=hexdigest,
                    tenant=tenant,
                    role=role,
                    source="config",
                    created_at=now,
                    created_by="(config file)",
                    revoked_at=now,
                    revoked_by=by,
                    updated_at=now,
                )
            )
        elif row is None:
            return None
        elif row.revoked_at is None:
            conn.execute(update(KEYS).where(k.key_id == key_id).values(revoked_at=now, revoked_by=by, updated_at=now))
        found = conn.execute(select(KEYS).where(k.key_id == key_id)).one()
    return _key(found)


def list_keys(engine: Engine) -> list[KeyRecord]:
    with engine.connect() as conn:
        return [_key(r) for r in conn.execute(select(KEYS).order_by(KEYS.c.created_at, KEYS.c.key_id))]


def keys_marker(engine: Engine) -> tuple[int, Any]:
    """Changes when any key row is added or changed: what a replica polls."""
    with engine.connect() as conn:
        count, latest = conn.execute(select(func.count(), func.max(KEYS.c.updated_at)).select_from(KEYS)).one()
    return int(count), latest


# -- policy versions and activations -------------------------------------------------------


def _version(row: Any) -> StoredVersion:
    return StoredVersion(row.name, row.version_hash, row.yaml_text, _utc(row.created_at), row.created_by, row.note)


def _activation(row: Any) -> Activation:
    return Activation(row.id, row.name, row.version_hash, _utc(row.activated_at), row.activated_by, row.note)


def versions(engine: Engine, name: str, *, limit: int = 100) -> list[StoredVersion]:
    v = VERSIONS.c
    q = select(VERSIONS).where(v.name == name).order_by(v.created_at.desc(), v.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [_version(r) for r in conn.execute(q)]


def find_version(engine: Engine, name: str, version_hash: str) -> StoredVersion | None:
    v = VERSIONS.c
    with engine.connect() as conn:
        row = conn.execute(select(VERSIONS).where(v.name == name, v.version_hash == version_hash)).first()
    return _version(row) if row is not None else None


def save_version(
    engine: Engine, *, name: str, version_hash: str, yaml_text: str, created_by: str, note: str | None
) -> tuple[StoredVersion, bool]:
    """Store a policy text unless that version is stored; (version, created)."""
    v = VERSIONS.c
    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        row = conn.execute(select(VERSIONS).where(v.name == name, v.version_hash == version_hash)).first()
        if row is not None:
            return _version(row), False
        conn.execute(
            insert(VERSIONS).values(
                name=name,
                version_hash=version_hash,
                yaml_text=yaml_text,
                created_at=datetime.now(UTC),
                created_by=created_by,
                note=note,
            )
        )
        row = conn.execute(select(VERSIONS).where(v.name == name, v.version_hash == version_hash)).one()
    return _version(row), True


def activate(engine: Engine, name: str, version_hash: str, *, by: str, note: str | None = None) -> Activation:
    """Make a stored version the one in force on every replica (within their poll interval)."""
    if find_version(engine, name, version_hash) is None:
        raise FleetError(f"policy {name!r} has no stored version {version_hash!r}")
    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        conn.execute(
            insert(ACTIVATIONS).values(
                name=name, version_hash=version_hash, activated_at=datetime.now(UTC), activated_by=by, note=note
            )
        )
        row = conn.execute(
            select(ACTIVATIONS).where(ACTIVATIONS.c.name == name).order_by(ACTIVATIONS.c.id.desc()).limit(1)
        ).one()
    return _activation(row)


def activations_after(engine: Engine, last_id: int) -> list[Activation]:
    """Activations newer than ``last_id``, oldest first (0: the newest per policy name only)."""
    a = ACTIVATIONS.c
    if last_id <= 0:
        q = select(ACTIVATIONS).where(a.id.in_(select(func.max(a.id)).group_by(a.name))).order_by(a.id)
    else:
        q = select(ACTIVATIONS).where(a.id > last_id).order_by(a.id)
    with engine.connect() as conn:
        return [_activation(r) for r in conn.execute(q)]


def active_versions(engine: Engine) -> dict[str, Activation]:
    return {a.name: a for a in activations_after(engine, 0)}
