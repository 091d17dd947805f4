"""Monthly partitions of ``audit_requests`` on PostgreSQL (SQLite stays one table).

Migration ``0006_partitions`` makes ``audit_requests`` a table partitioned by range on
``started_at``, one partition per UTC month, named ``audit_requests_pYYYYMM``, plus
``audit_requests_default`` for a record outside every month made so far (a clock far off, or
a gateway that ran past the months made ahead). PostgreSQL wants the partition key in every
unique constraint, so the primary key is ``(request_id, started_at)`` and the chain's unique
key ``(chain_id, seq, started_at)``; a record sent twice has the same ``started_at``, so it
still collides with itself, and two writers racing on one chain are told apart by the chain
head's compare-and-set (``audit.write.store``) instead.

``ensure_partitions`` makes the current month and the next ``AHEAD`` months; ``warden db
upgrade``, a gateway's start and ``warden audit prune`` call it. Should a month be made while
the default partition holds rows of it, those rows move into it in the same transaction.

``drop_if_covered`` drops a whole-month partition for ``audit.read.prune`` when every row in it is
at or below its chain's checkpoint. The index tables (``audit_acted_steps``,
``audit_spans``) stay unpartitioned: a few small rows per request, without the timestamp a
partition key needs, deleted by request id just before their partition is dropped.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

TABLE = "audit_requests"
DEFAULT = f"{TABLE}_default"
#: months made ahead of the current one
AHEAD = 3
_NAME = re.compile(rf"^{TABLE}_p(\d{{4}})(\d{{2}})$")


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    """One month's partition: rows with ``lo <= started_at < hi``."""

    lo: datetime
    hi: datetime
    name: str


def month_start(value: datetime) -> datetime:
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, 1, tzinfo=UTC)


def next_month(lo: datetime) -> datetime:
    return datetime(lo.year + lo.month // 12, lo.month % 12 + 1, 1, tzinfo=UTC)


def partition_name(lo: datetime) -> str:
    return f"{TABLE}_p{lo.year:04d}{lo.month:02d}"


def is_partition_name(name: str) -> bool:
    """A partition's own table (Alembic's autogenerate must not see these as stray tables)."""
    return name == DEFAULT or _NAME.match(name) is not None


def _lit(value: datetime) -> str:
    # explicit UTC offset: the bound does not depend on the session's TimeZone
    return f"'{value:%Y-%m-%d %H:%M:%S}+00'"


def is_partitioned(conn: Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": TABLE}).scalar()
    return bool(kind == "p")


def partitions(conn: Connection) -> list[Partition]:
    """The month partitions attached now, oldest first (the default partition not included)."""
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": TABLE},
    ).scalars()
    out = []
    for name in rows:
        m = _NAME.match(name)
        if m:
            lo = datetime(int(m[1]), int(m[2]), 1, tzinfo=UTC)
            out.append(Partition(lo, next_month(lo), name))
    return sorted(out)


def create_month(conn: Connection, lo: datetime) -> Partition:
    """Make the partition of the month starting at ``lo``, moving its rows out of the default."""
    lo = month_start(lo)
    part = Partition(lo, next_month(lo), partition_name(lo))
    bounds = f"FOR VALUES FROM ({_lit(part.lo)}) TO ({_lit(part.hi)})"
    in_range = f"started_at >= {_lit(part.lo)} AND started_at < {_lit(part.hi)}"
    stray = conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {DEFAULT} WHERE {in_range})")).scalar()  # noqa: S608
    if not stray:
        conn.execute(text(f"CREATE TABLE {part.name} PARTITION OF {TABLE} {bounds}"))
        return part
    # PostgreSQL refuses a new partition whose rows sit in the default one: move them.
    conn.execute(text(f"ALTER TABLE {TABLE} DETACH PARTITION {DEFAULT}"))
    conn.execute(text(f"CREATE TABLE {part.name} PARTITION OF {TABLE} {bounds}"))
    conn.execute(text(f"INSERT INTO {TABLE} SELECT * FROM {DEFAULT} WHERE {in_range}"))  # noqa: S608
    conn.execute(text(f"DELETE FROM {DEFAULT} WHERE {in_range}"))  # noqa: S608
    conn.execute(text(f"ALTER TABLE {TABLE} ATTACH PARTITION {DEFAULT} DEFAULT"))
    return part


def ensure_partitions_in(conn: Connection, now: datetime | None = None, ahead: int = AHEAD) -> list[str]:
    """Make the missing partitions from this month to ``ahead`` months on; their names."""
    if not is_partitioned(conn):
        return []
    have = {p.lo for p in partitions(conn)}
    lo = month_start(now or datetime.now(UTC))
    made = []
    for _ in range(ahead + 1):
        if lo not in have:
            made.append(create_month(conn, lo).name)
        lo = next_month(lo)
    return made


def ensure_partitions(engine: Engine, now: datetime | None = None, ahead: int = AHEAD) -> list[str]:
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        if not is_partitioned(conn):
            return []
        have = {p.lo for p in partitions(conn)}
    lo, needed = month_start(now or datetime.now(UTC)), False
    for _ in range(ahead + 1):
        needed = needed or lo not in have
        lo = next_month(lo)
    if not needed:
        return []  # the common case: no DDL, no lock
    # PostgreSQL only, so no SQLite ``BEGIN IMMEDIATE`` (``audit.db.WRITE_OPTIONS``) to ask for.
    with engine.connect() as conn, conn.begin():
        # one maker at a time (replicas start together); the same lock as migrations
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": 0x5741_5244})
        return ensure_partitions_in(conn, now, ahead)


def months_before(conn: Connection, before: datetime) -> list[Partition]:
    """The month partitions that ended at or before ``before``."""
    return [p for p in partitions(conn) if p.hi <= before]


def drop_if_covered(conn: Connection, part: Partition, covered: dict[str, int]) -> int | None:
    """Drop ``part`` if every row in it is at or below its chain's checkpoint (``covered``:
    chain id -> checkpoint seq); the number of records dropped, or None if it is kept.

    A month holding a record that is not covered (one that started before the month ended
    but was linked after a newer one, or one of a chain whose prune was refused) is kept; its
    covered rows are deleted one by one instead. The partition is locked before the check, so
    a late record cannot arrive between the check and the drop. Its index rows go first: a
    crash in between leaves records without index rows at or below a checkpoint, which verify
    does not look at, rather than index rows without a record.
    """
    conn.execute(text(f"LOCK TABLE {part.name} IN ACCESS EXCLUSIVE MODE"))
    ids = list(covered)
    left = conn.execute(
        text(
            f"SELECT EXISTS (SELECT 1 FROM {part.name} r "  # noqa: S608 - our own partition name
            "LEFT JOIN unnest(CAST(:ids AS text[]), CAST(:seqs AS bigint[])) AS c(chain_id, seq) "
            "ON c.chain_id = r.chain_id WHERE c.seq IS NULL OR r.seq > c.seq)"
        ),
        {"ids": ids, "seqs": [covered[c] for c in ids]},
    ).scalar()
    if left:
        return None
    count = int(conn.execute(text(f"SELECT count(*) FROM {part.name}")).scalar_one())  # noqa: S608
    for index in ("audit_spans", "audit_acted_steps"):
        conn.execute(text(f"DELETE FROM {index} WHERE request_id IN (SELECT request_id FROM {part.name})"))  # noqa: S608
    conn.execute(text(f"DROP TABLE {part.name}"))
    return count


def include_name(name: str | None, type_: str, parent_names: MutableMapping[Any, str | None]) -> bool:
    """Alembic ``include_name`` hook: partitions and their indexes are made here, not by models."""
    if type_ == "table":
        return name is None or not is_partition_name(name)
    table = parent_names.get("table_name")
    return table is None or not is_partition_name(table)
