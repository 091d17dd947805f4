"""Dashboard users and their server-side sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update

from audit.db import WRITE_OPTIONS
from audit.models import Base
from audit.rows import utc

USERS = Base.metadata.tables["users"]
SESSIONS = Base.metadata.tables["dashboard_sessions"]


@dataclass(frozen=True, slots=True)
class StoredSession:
    id_hash: str
    user_name: str
    created_at: datetime
    last_seen: datetime
    expires_at: datetime
    ended_at: datetime | None


def create_session(engine: Engine, *, id_hash: str, user: str, now: datetime, expires_at: datetime) -> None:

    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        conn.execute(
            insert(SESSIONS).values(
                id_hash=id_hash, user_name=user, created_at=now, last_seen=now, expires_at=expires_at, ended_at=None
            )
        )


def find_session(engine: Engine, id_hash: str) -> StoredSession | None:
    with engine.connect() as conn:
        row = conn.execute(select(SESSIONS).where(SESSIONS.c.id_hash == id_hash)).first()
    if row is None:
        return None
    return StoredSession(
        row.id_hash,
        row.user_name,
        utc(row.created_at) or row.created_at,
        utc(row.last_seen) or row.last_seen,
        utc(row.expires_at) or row.expires_at,
        utc(row.ended_at),
    )


def touch_session(engine: Engine, id_hash: str, now: datetime) -> None:

    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        conn.execute(update(SESSIONS).where(SESSIONS.c.id_hash == id_hash).values(last_seen=now))


def end_session(engine: Engine, id_hash: str, now: datetime) -> None:

    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        conn.execute(
            update(SESSIONS).where(SESSIONS.c.id_hash == id_hash, SESSIONS.c.ended_at.is_(None)).values(ended_at=now)
        )


# -- users ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserRecord:
    name: str
    role: str
    password_hash: str = field(repr=False)
    disabled: bool


def get_user(engine: Engine, name: str) -> UserRecord | None:
    u = USERS.c
    with engine.connect() as conn:
        row = conn.execute(select(u.name, u.role, u.password_hash, u.disabled).where(u.name == name)).first()
    return UserRecord(row.name, row.role, row.password_hash, bool(row.disabled)) if row is not None else None


def insert_user(engine: Engine, *, name: str, role: str, password_hash: str) -> None:
    """Raises ``sqlalchemy.exc.IntegrityError`` when the name is taken."""

    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        conn.execute(
            insert(USERS).values(
                name=name, role=role, password_hash=password_hash, created_at=datetime.now(UTC), disabled=False
            )
        )


def update_password_hash(engine: Engine, name: str, password_hash: str) -> None:
    """Store a re-hashed password (argon2 parameters raised since it was hashed)."""

    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        conn.execute(update(USERS).where(USERS.c.name == name).values(password_hash=password_hash))
