"""Fast inserts of prepared records: the writer's hot path.

SQLAlchemy Core's ``executemany`` costs more per row than SQLite itself takes to store it,
so rows are built as tuples straight from the prepared objects and handed to the driver:
multi-row ``INSERT`` statements on SQLite, ``COPY ... FROM STDIN`` on PostgreSQL (psycopg 3). Other
backends fall back to Core inserts. ``benchmarks/audit_writer.py`` measures the difference.
The writer builds each record's rows in its prepare thread (``prepare_rows``), so the commit
only adds the chain fields.

PostgreSQL gets binary COPY: psycopg's text COPY costs ~4x the client CPU, and the server
parses binary timestamps and floats for less.

A request's steps document is the slice of its canonical bytes that holds the steps
(``Prepared.steps_json``), stored as text: byte for byte what was hashed.

SQLite stores timestamps the way SQLAlchemy's ``DateTime`` does (naive UTC,
``YYYY-MM-DD HH:MM:SS.ffffff``), so the models read these rows back unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from itertools import chain
from typing import Any, Final

import orjson
from psycopg import sql
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Double,
    Integer,
    String,
    Table,
    bindparam,
    insert,
)
from sqlalchemy.dialects import sqlite

from audit.record import ChainKind
from audit.rows import ACTED, REQUESTS, REVIEWS, SPANS, index_of
from audit.write.prepared import Prepared

Row = tuple[Any, ...]
DateConv = Callable[[datetime | None], Any]

REQUEST_COLUMNS = (
    "request_id", "chain_id", "seq", "prev_hash", "hash", "started_at", "finished_at", "tenant",
    "key_id", "client_addr", "endpoint", "model_requested", "model_served", "stream",
    "policy_name", "policy_version", "input_text", "output_text", "verdict", "status",
    "http_status", "finish_reason", "prompt_tokens", "completion_tokens", "latency_ms", "ttft_ms",
    "trace_id", "error", "steps", "salt", "texts",
)  # fmt: skip
ACTED_COLUMNS = ("request_id", "seq", "stage", "name", "verdict", "score", "enforced")
SPAN_COLUMNS = (
    "request_id", "step_seq", "idx", "entity_type", "span_start", "span_end", "score", "fingerprint",
)  # fmt: skip
REVIEW_COLUMNS = (
    "review_id", "chain_id", "seq", "prev_hash", "hash", "request_id", "reviewer", "ruling", "note", "at",
)  # fmt: skip


def _sqlite_dt(value: datetime | None) -> str | None:
    # Values are UTC (``audit.write.prepared``): dropping the "+00:00" suffix leaves the naive form.
    if value is None:
        return None
    text = value.isoformat(" ", "microseconds")
    return text if value.tzinfo is None else text[:-6]


_SQLITE_DT_LEN: Final = len("2026-01-02 03:04:05.123456")


def _sqlite_dts(values: list[datetime | None]) -> list[str | None]:
    """``_sqlite_dt`` for many values at once, ~5x faster than one ``isoformat`` each.

    orjson formats them all in one call (``"2026-01-02T03:04:05.123456Z"``); in that array
    "T" and ``Z"`` occur only as separator and suffix. It leaves out zero microseconds, so any
    value not of the full length is formatted the careful way.
    """
    dumped = orjson.dumps(values, option=orjson.OPT_UTC_Z)
    out: list[str | None] = orjson.loads(dumped.replace(b"T", b" ").replace(b'Z"', b'"'))
    for i, text in enumerate(out):
        if text is not None and len(text) != _SQLITE_DT_LEN:
            out[i] = _sqlite_dt(values[i])
    return out


def _same_dt(value: datetime | None) -> datetime | None:
    return value


#: a request's rows, made ahead (in the writer's prepare thread) for one SQL dialect:
#: (dialect, request columns after ``hash``, acted-step rows, span rows, integers fit ``int4``)
RecordRows = tuple[str, Row, list[Row], list[Row], bool]

_INT4: Final = 2**31


def record_rows(p: Prepared, dialect: str) -> RecordRows:
    o, plain = p.obj, p.plain
    assert plain is not None, "request records are committed (audit.commitments) when prepared"
    rid = o["request_id"]
    if dialect == "sqlite":
        started, finished = _sqlite_dts([o["started_at"], o["finished_at"]])
    else:
        started, finished = o["started_at"], o["finished_at"]
    tail = (
        started, finished, o["tenant"], o["key_id"], o["client_addr"], o["endpoint"],
        o["model_requested"], o["model_served"], o["stream"], o["policy_name"],
        o["policy_version"], plain.input_text, plain.output_text, o["verdict"], o["status"],
        o["http_status"], o["finish_reason"], o["prompt_tokens"], o["completion_tokens"],
        o["latency_ms"], o["ttft_ms"], o["trace_id"], o["error"], p.steps_json().decode(),
        plain.salt, None if plain.texts is None else plain.texts.decode(),
    )  # fmt: skip
    # no fingerprints: the steps' nulls are already right, and index_of need not look any up
    acted, spans = index_of(p.steps(), plain.fingerprints() or None)
    acted_rows = [(rid, *row) for row in acted]
    span_rows = [(rid, *row) for row in spans]
    fits = True
    if dialect == "postgresql":
        # psycopg's binary int4 dumper wraps larger values silently; such a record goes by text
        # COPY, where the server refuses it (as it always has).
        ints = [o["http_status"], o["prompt_tokens"] or 0, o["completion_tokens"] or 0]
        ints += [row[1] for row in acted_rows]
        ints += [n for row in span_rows for n in row[1:3] + row[4:6]]
        fits = min(ints) >= -_INT4 and max(ints) < _INT4
    return dialect, tail, acted_rows, span_rows, fits


def prepare_rows(items: Sequence[Prepared], dialect: str) -> None:
    """Build the records' rows ahead of the commit (only the chain fields are left to add)."""
    for p in items:
        if p.kind is ChainKind.requests:
            p.rows = record_rows(p, dialect)
            p.compact()


def _rows(p: Prepared, dialect: str) -> RecordRows:
    rows: RecordRows | None = p.rows
    if rows is None or rows[0] != dialect:
        rows = p.rows = record_rows(p, dialect)
    return rows


def request_rows(items: Sequence[Prepared], dialect: str) -> list[Row]:
    return [
        (p.obj["request_id"], p.obj["chain_id"], p.obj["seq"], p.prev_hash, p.hash, *_rows(p, dialect)[1])
        for p in items
    ]


def acted_rows(items: Sequence[Prepared], dialect: str) -> list[Row]:
    return [row for p in items for row in _rows(p, dialect)[2]]


def span_rows(items: Sequence[Prepared], dialect: str) -> list[Row]:
    return [row for p in items for row in _rows(p, dialect)[3]]


def review_rows(items: Sequence[Prepared], dt: DateConv) -> list[Row]:
    rows = []
    for p in items:
        o = p.obj
        rows.append((
            o["review_id"], o["chain_id"], o["seq"], p.prev_hash, p.hash, o["request_id"],
            o["reviewer"], o["ruling"], o["note"], dt(o["at"]),
        ))  # fmt: skip
    return rows


def insert_records(conn: Connection, items: Sequence[Prepared]) -> None:
    dialect = conn.dialect.name
    binary = all(_rows(p, dialect)[4] for p in items)
    _insert(conn, REQUESTS, REQUEST_COLUMNS, request_rows(items, dialect), binary=binary)
    _insert(conn, ACTED, ACTED_COLUMNS, acted_rows(items, dialect), binary=binary)
    _insert(conn, SPANS, SPAN_COLUMNS, span_rows(items, dialect), binary=binary)


def insert_reviews(conn: Connection, items: Sequence[Prepared]) -> None:
    dt = _sqlite_dt if conn.dialect.name == "sqlite" else _same_dt
    _insert(conn, REVIEWS, REVIEW_COLUMNS, review_rows(items, dt), binary=True)


def _insert(conn: Connection, table: Table, columns: Sequence[str], rows: list[Row], *, binary: bool) -> None:
    if not rows:
        return
    name = conn.dialect.name
    if name == "sqlite":
        _sqlite_rows(conn, table, tuple(columns), rows)
    elif name == "postgresql" and conn.dialect.driver == "psycopg":
        _copy(conn, table, tuple(columns), rows, binary=binary)
    else:
        conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])


#: rows per multi-row INSERT on SQLite (fewer if the connection allows fewer variables)
SQLITE_ROWS_PER_INSERT = 512


def _sqlite_rows(conn: Connection, table: Table, columns: tuple[str, ...], rows: list[Row]) -> None:
    """Insert with multi-row ``INSERT ... VALUES (...), (...)`` statements.

    ``executemany`` steps SQLite once per row, and the sqlite3 module takes the GIL back after
    every step: while the writer's other thread is busy, each of those waits up to the
    interpreter's switch interval. One statement per few hundred rows is ~20% less work for
    SQLite itself, and leaves the GIL alone for milliseconds at a time. Chunks halve in size
    towards the end of a batch, so only a few statements per table are ever compiled (and
    cached by the driver).
    """
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    width = len(columns)
    size = max(1, min(SQLITE_ROWS_PER_INSERT, raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    cur = raw.cursor()
    try:
        i, n = 0, len(rows)
        while i < n:
            while n - i < size:
                size //= 2
            cur.execute(_sqlite_insert(table, columns, size), tuple(chain.from_iterable(rows[i : i + size])))
            i += size
    finally:
        cur.close()


@lru_cache(maxsize=64)
def _sqlite_insert(table: Table, columns: tuple[str, ...], rows: int = 1) -> str:
    stmt = insert(table).values({c: bindparam(c) for c in columns})
    compiled = stmt.compile(dialect=sqlite.dialect())
    assert compiled.positiontup == list(columns), compiled.positiontup
    one = str(compiled)
    values = one[one.rindex(" VALUES (") + len(" VALUES ") :]
    return one + f", {values}" * (rows - 1)


def _pg_type(column: Column[Any]) -> str | None:
    """The PostgreSQL type whose binary form COPY must send for ``column``, if known here."""
    t = column.type
    if isinstance(t, DateTime):
        return "timestamptz" if t.timezone else "timestamp"
    if isinstance(t, Boolean):
        return "bool"
    if isinstance(t, BigInteger):
        return "int8"
    if isinstance(t, Integer):
        return "int4"
    if isinstance(t, Double):
        return "float8"
    if isinstance(t, String):
        return "text"
    return None


@lru_cache(maxsize=16)
def _copy_types(table: Table, columns: tuple[str, ...]) -> list[str] | None:
    types = [_pg_type(table.c[c]) for c in columns]
    return None if None in types else [t for t in types if t is not None]


def _copy(conn: Connection, table: Table, columns: tuple[str, ...], rows: list[Row], *, binary: bool) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    types = _copy_types(table, columns) if binary else None
    statement = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        sql.Identifier(table.name),
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        sql.SQL(" (FORMAT BINARY)" if types else ""),
    )
    with raw.cursor() as cur, cur.copy(statement) as copy:
        if types:
            copy.set_types(types)
        for row in rows:
            copy.write_row(row)
