"""Engines and schema upgrades for the audit database (SQLite by default, PostgreSQL by URL).

* ``make_engine(url)``: SQLite gets WAL, ``synchronous=FULL`` (a committed batch survives a
  power cut, as the spool does), a busy timeout and foreign keys on every connection, and
  write transactions that can ask for ``BEGIN IMMEDIATE`` (``WRITE_OPTIONS``) so two
  processes on one file queue on the busy timeout instead of failing on a stale snapshot.
  ``sqlite:///relative.db`` paths stay relative to the working directory; their folder is
  created. ``postgresql://`` URLs are rewritten to the psycopg 3 driver.
* ``upgrade(url_or_engine)`` runs the Alembic migrations in ``audit/migrations`` with a
  Config built in code (no ``alembic.ini``), under a lock so replicas can start together.
* ``ensure_schema(engine)``: a SQLite database is upgraded in place (a new, empty file
  included); a PostgreSQL database that is behind raises ``SchemaOutOfDate`` naming the
  command to run, because upgrading a shared database is an operator's decision. On an
  up-to-date PostgreSQL it (like ``upgrade``) makes the monthly partitions of the coming
  months if they are missing (``audit.partitions``).

Alembic is imported only to migrate: the gateway's start checks the revision with one query,
and a new, empty SQLite file gets the models' tables and the head revision stamped (what
Alembic advises for a fresh database; ``tests/audit/test_audit_models.py`` holds models and
migrations equal). Importing Alembic costs about half a second of start-up.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    event,
    text,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import URL, make_url

from audit.partitions import ensure_partitions

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
#: the newest migration's revision; a test holds it equal to Alembic's head
HEAD_REVISION = "0007_dashboard_indexes"

#: Execution options for a transaction that will write (SQLite: ``BEGIN IMMEDIATE``).
WRITE_OPTIONS: dict[str, Any] = {"warden_begin": "IMMEDIATE"}

#: Arbitrary constant for ``pg_advisory_xact_lock`` around migrations.
_MIGRATION_LOCK = 0x5741_5244


class SchemaOutOfDate(RuntimeError):
    """The database is not at the migration head and will not be upgraded implicitly."""


def json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def normalize_url(url: str | URL) -> URL:
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def make_engine(
    url: str | URL,
    *,
    sqlite_busy_timeout_ms: int = 5000,
    pg_connect_timeout_s: int = 5,
    **kwargs: Any,
) -> Engine:
    u = normalize_url(url)
    options: dict[str, Any] = {"json_serializer": json_dumps, "json_deserializer": orjson.loads}
    if u.get_backend_name() == "sqlite":
        _make_sqlite_dir(u)
        engine = create_engine(u, **options, **kwargs)
        _sqlite_events(engine, sqlite_busy_timeout_ms)
        return engine
    if u.get_backend_name() == "postgresql":
        connect_args = {"connect_timeout": pg_connect_timeout_s, **kwargs.pop("connect_args", {})}
        return create_engine(u, pool_pre_ping=True, connect_args=connect_args, **options, **kwargs)
    return create_engine(u, **options, **kwargs)


def _make_sqlite_dir(u: URL) -> None:
    db = u.database
    if db and db != ":memory:" and not db.startswith("file:"):
        Path(db).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_events(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # Autocommit at the driver: SQLAlchemy's "begin" event below decides how to BEGIN.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA foreign_keys = ON")
        # 32 MiB of page cache (default 2): index pages of a large audit file stay in memory.
        cur.execute("PRAGMA cache_size = -32768")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("warden_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


#: Alembic's own bookkeeping table, as ``alembic`` creates it
_VERSION_TABLE = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not sa_inspect(conn).has_table("alembic_version"):
            return None
        version: str | None = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return version


def upgrade(url_or_engine: str | URL | Engine, revision: str = "head") -> None:
    engine = url_or_engine if isinstance(url_or_engine, Engine) else make_engine(url_or_engine)
    try:
        with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            from alembic import command

            command.upgrade(alembic_config(conn), revision)
        if engine.dialect.name == "postgresql":
            ensure_partitions(engine)
    finally:
        if engine is not url_or_engine:
            engine.dispose()


def ensure_schema(engine: Engine) -> None:
    current, head = current_revision(engine), HEAD_REVISION
    if current == head:
        if engine.dialect.name == "postgresql":
            ensure_partitions(engine)
        return
    if engine.dialect.name == "sqlite":
        if current is None and _create_fresh(engine):
            return
        upgrade(engine)
        return
    raise SchemaOutOfDate(
        f"audit database is at revision {current or 'none (empty)'}, this Warden needs {head}: run `warden db upgrade`"
    )


def _create_fresh(engine: Engine) -> bool:
    """Tables and the head revision for a database with no tables at all; False otherwise."""
    from audit.models import Base

    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        if sa_inspect(conn).get_table_names():
            return False
        Base.metadata.create_all(conn)
        _VERSION_TABLE.create(conn)
        conn.execute(_VERSION_TABLE.insert().values(version_num=HEAD_REVISION))
    return True
