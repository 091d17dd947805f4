"""Fast inserts of prepared records: the writer's hot path.

SQLAlchemy Core's ``executemany`` costs more per row than SQLite itself takes to store it,
so rows are built as tuples straight from the prepared objects and handed to the driver:
``cursor.executemany`` on SQLite, ``COPY ... FROM STDIN`` on PostgreSQL (psycopg 3). Other
backends fall back to Core inserts. ``benchmarks/audit_writer.py`` measures the difference.

SQLite stores timestamps the way SQLAlchemy's ``DateTime`` does (naive UTC,
``YYYY-MM-DD HH:MM:SS.ffffff``), so the models read these rows back unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from psycopg import sql
from sqlalchemy import Connection, Table, bindparam, insert
from sqlalchemy.dialects import sqlite

from audit.db import json_dumps
from audit.prepared import Prepared
from audit.rows import REQUESTS, REVIEWS, SPANS, STEPS

Row = tuple[Any, ...]
DateConv = Callable[[datetime | None], Any]

REQUEST_COLUMNS = (
    "request_id", "chain_id", "seq", "prev_hash", "hash", "started_at", "finished_at", "tenant",
    "key_id", "client_addr", "endpoint", "model_requested", "model_served", "stream",
    "policy_name", "policy_version", "input_text", "output_text", "verdict", "status",
    "http_status", "finish_reason", "prompt_tokens", "completion_tokens", "latency_ms", "ttft_ms",
    "trace_id", "error",
)  # fmt: skip
STEP_COLUMNS = (
    "request_id", "seq", "stage", "name", "verdict", "score", "latency_ms", "enforced", "detail",
    "text", "at",
)  # fmt: skip
SPAN_COLUMNS = (
    "request_id", "step_seq", "idx", "entity_type", "span_start", "span_end", "score", "fingerprint",
)  # fmt: skip
REVIEW_COLUMNS = (
    "review_id", "chain_id", "seq", "prev_hash", "hash", "request_id", "reviewer", "ruling", "note", "at",
)  # fmt: skip


def _sqlite_dt(value: datetime | None) -> str | None:
    # Values are UTC (``audit.prepared``): dropping the "+00:00" suffix leaves the naive form.
    if value is None:
        return None
    text = value.isoformat(" ", "microseconds")
    return text if value.tzinfo is None else text[:-6]


def _same_dt(value: datetime | None) -> datetime | None:
    return value


def request_rows(items: Sequence[Prepared], dt: DateConv) -> list[Row]:
    rows = []
    for p in items:
        o = p.obj
        rows.append((
            o["request_id"], o["chain_id"], o["seq"], p.prev_hash, p.hash, dt(o["started_at"]),
            dt(o["finished_at"]), o["tenant"], o["key_id"], o["client_addr"], o["endpoint"],
            o["model_requested"], o["model_served"], o["stream"], o["policy_name"],
            o["policy_version"], o["input_text"], o["output_text"], o["verdict"], o["status"],
            o["http_status"], o["finish_reason"], o["prompt_tokens"], o["completion_tokens"],
            o["latency_ms"], o["ttft_ms"], o["trace_id"], o["error"],
        ))  # fmt: skip
    return rows


def step_rows(items: Sequence[Prepared], dt: DateConv) -> list[Row]:
    rows = []
    for p in items:
        rid = p.obj["request_id"]
        details = p.details or [json_dumps(s["detail"]) for s in p.obj["steps"]]
        for s, detail in zip(p.obj["steps"], details, strict=True):
            rows.append((
                rid, s["seq"], s["stage"], s["name"], s["verdict"], s["score"], s["latency_ms"],
                s["enforced"], detail, s["text"], dt(s["at"]),
            ))  # fmt: skip
    return rows


def span_rows(items: Sequence[Prepared]) -> list[Row]:
    rows = []
    for p in items:
        rid = p.obj["request_id"]
        for s in p.obj["steps"]:
            for i, sp in enumerate(s["spans"]):
                rows.append((
                    rid, s["seq"], i, sp["entity_type"], sp["start"], sp["end"], sp["score"],
                    sp["fingerprint"],
                ))  # fmt: skip
    return rows


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
    dt = _sqlite_dt if conn.dialect.name == "sqlite" else _same_dt
    _insert(conn, REQUESTS, REQUEST_COLUMNS, request_rows(items, dt))
    _insert(conn, STEPS, STEP_COLUMNS, step_rows(items, dt))
    _insert(conn, SPANS, SPAN_COLUMNS, span_rows(items))


def insert_reviews(conn: Connection, items: Sequence[Prepared]) -> None:
    dt = _sqlite_dt if conn.dialect.name == "sqlite" else _same_dt
    _insert(conn, REVIEWS, REVIEW_COLUMNS, review_rows(items, dt))


def _insert(conn: Connection, table: Table, columns: Sequence[str], rows: list[Row]) -> None:
    if not rows:
        return
    name = conn.dialect.name
    if name == "sqlite":
        conn.exec_driver_sql(_sqlite_insert(table, tuple(columns)), rows)
    elif name == "postgresql" and conn.dialect.driver == "psycopg":
        _copy(conn, table, columns, rows)
    else:
        conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])


@lru_cache(maxsize=16)
def _sqlite_insert(table: Table, columns: tuple[str, ...]) -> str:
    stmt = insert(table).values({c: bindparam(c) for c in columns})
    compiled = stmt.compile(dialect=sqlite.dialect())
    assert compiled.positiontup == list(columns), compiled.positiontup
    return str(compiled)


def _copy(conn: Connection, table: Table, columns: Sequence[str], rows: list[Row]) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    with raw.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
