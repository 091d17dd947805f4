"""Schema, migrations and engines of the audit database, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text

from audit.db import (
    HEAD_REVISION,
    SchemaOutOfDate,
    current_revision,
    ensure_schema,
    head_revision,
    make_engine,
    normalize_url,
    upgrade,
)
from audit.models import Base
from audit.partitions import include_name
from audit.read.record_filter import RecordFilter, where
from audit.rows import REQUESTS
from tests.audit_db import audit_url, database_url

__all__ = ["audit_url", "database_url"]


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_name": include_name})
            assert [d for d in compare_metadata(context, Base.metadata) if not _partition_key(d)] == []
        tables = set(inspect(engine).get_table_names())
        assert {"audit_requests", "audit_acted_steps", "audit_spans", "audit_reviews", "audit_chains"} <= tables
        assert "audit_steps" not in tables
        assert {"audit_checkpoints", "users", "policy_versions"} <= tables
    finally:
        engine.dispose()


def _partition_key(diff: object) -> bool:
    """PostgreSQL's partitioned audit_requests has started_at in its chain's unique key
    (``audit.partitions``); the models describe the SQLite table, which does not."""
    if not isinstance(diff, tuple) or diff[0] not in ("add_constraint", "remove_constraint"):
        return False
    return getattr(diff[1], "name", None) == "uq_audit_requests_chain_seq"


def test_upgrade_twice_is_a_no_op(audit_url: str) -> None:
    upgrade(audit_url)
    engine = make_engine(audit_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_ensure_schema_creates_a_new_sqlite_file(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/new/dir/audit.db")
    try:
        ensure_schema(engine)
        assert current_revision(engine) == head_revision()
        assert (tmp_path / "new/dir/audit.db").exists()
    finally:
        engine.dispose()


def test_ensure_schema_leaves_an_empty_postgres_to_the_operator(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        if engine.dialect.name == "sqlite":
            pytest.skip("SQLite upgrades itself")
        with pytest.raises(SchemaOutOfDate, match="warden db upgrade"):
            ensure_schema(engine)
    finally:
        engine.dispose()


def test_relative_sqlite_paths_stay_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    engine = make_engine("sqlite:///var/warden.db")
    try:
        ensure_schema(engine)
    finally:
        engine.dispose()
    assert (tmp_path / "var/warden.db").is_file()


def test_sqlite_connections_get_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/a.db", sqlite_busy_timeout_ms=1234)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_postgres_urls_use_psycopg3(given: str, driver: str) -> None:
    assert normalize_url(given).drivername == driver


FILTERS = {
    "tenant": (RecordFilter(tenants=("t",)), "ix_audit_requests_tenant_started"),
    "model": (RecordFilter(models=("m",)), "ix_audit_requests_model_started"),
    "verdict": (RecordFilter(verdicts=("flag",)), "ix_audit_requests_verdict_started"),
    "policy": (RecordFilter(policy_versions=("v",)), "ix_audit_requests_policy_started"),
    # each request's acted steps, probed by their key; PostgreSQL may read the name index instead
    "check": (RecordFilter(checks=("pii",)), "pk_audit_acted_steps"),
}
#: how SQLite's plan names a table's own key (``WITHOUT ROWID``), and other indexes that serve
ALSO = {"pk_audit_acted_steps": ["USING PRIMARY KEY (request_id=?)", "ix_audit_acted_steps_name"]}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_dashboard_filters_are_served_by_an_index(audit_url: str, name: str) -> None:
    """The planner must be able to use the index (checked with seq scans priced out on PG)."""
    flt, index = FILTERS[name]
    q = select(REQUESTS.c.request_id).where(*where(flt)).order_by(REQUESTS.c.started_at.desc()).limit(50)
    engine = make_engine(audit_url)
    try:
        with engine.connect() as conn:
            sql = str(q.compile(conn, compile_kwargs={"literal_binds": True}))
            names = [index, *ALSO.get(index, [])]
            if conn.dialect.name == "sqlite":
                plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            else:
                conn.exec_driver_sql("SET enable_seqscan = off")
                plan = " ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))
                # on the monthly partitions the planner uses the parent index's copy in each
                names += (
                    conn.execute(
                        text(
                            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                            "WHERE i.inhparent = to_regclass(:ix)"
                        ),
                        {"ix": index},
                    )
                    .scalars()
                    .all()
                )
    finally:
        engine.dispose()
    assert any(n in plan for n in names), plan


def test_head_revision_constant_is_alembics_head() -> None:
    assert head_revision() == HEAD_REVISION


def _schema(engine: Engine) -> dict[str, object]:
    inspector = inspect(engine)
    return {
        table: (
            sorted((c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)),
            sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)),
            sorted(tuple(f["constrained_columns"]) for f in inspector.get_foreign_keys(table)),
            inspector.get_pk_constraint(table)["constrained_columns"],
        )
        for table in inspector.get_table_names()
    }


def test_a_fresh_sqlite_file_gets_the_same_schema_as_the_migrations(tmp_path: Path) -> None:
    fresh, migrated = make_engine(f"sqlite:///{tmp_path}/fresh.db"), make_engine(f"sqlite:///{tmp_path}/migrated.db")
    try:
        ensure_schema(fresh)  # creates the models' tables and stamps the head, without Alembic
        upgrade(migrated)
        assert current_revision(fresh) == head_revision()
        assert _schema(fresh) == _schema(migrated)
        with fresh.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_name": include_name})
            assert [d for d in compare_metadata(context, Base.metadata) if not _partition_key(d)] == []
        upgrade(fresh)  # Alembic takes the stamped file as up to date
        assert current_revision(fresh) == head_revision()
    finally:
        fresh.dispose()
        migrated.dispose()


def test_starting_on_a_current_or_fresh_database_does_not_import_alembic(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from audit.db import ensure_schema, make_engine\n"
        f"engine = make_engine('sqlite:///{tmp_path}/a.db')\n"
        "ensure_schema(engine)\n"
        "ensure_schema(engine)\n"
        "assert 'alembic' not in sys.modules, 'alembic was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
