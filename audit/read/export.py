"""Records out of the database, in the shape compliance teams already use.

``to_compliance(record)`` gives ``{"request_id", "input_text", "inference_steps": [{"step",
"action", "result", ...}], "output_decision", ...}`` with Warden's own fields beside them:
``step`` is the step's position, ``action`` what Warden did there (``"<stage>:<name>"``, e.g.
``"input:pii"`` or ``"reasoning:step"``), ``result`` that step's verdict (``pass``, ``flag``,
``redact``, ``block``, ``error``); ``output_decision`` is what happened to the answer
(``allowed``, ``flagged``, ``redacted``, ``blocked``, ``error``). ``GET /v1/audit/requests/{id}``
and ``warden audit export`` both use it.

``iter_records`` streams in pages (keyset on ``started_at, request_id``), so an export of a
million records never holds more than one page; ``write_jsonl`` / ``write_csv`` write it. Which
records: ``audit.read.record_filter.RecordFilter``, the filter the dashboard uses too.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import IO, Any

import orjson
from sqlalchemy import Engine, func, select, tuple_

from audit.canonical import span_obj
from audit.read.record_filter import RecordFilter, where
from audit.record import AuditRecord, StepRecord, Verdict
from audit.rows import REQUESTS, load_page, load_record

PAGE = 500

OUTPUT_DECISION = {
    Verdict.passed: "allowed",
    Verdict.flag: "flagged",
    Verdict.redact: "redacted",
    Verdict.block: "blocked",
    Verdict.error: "error",
}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _step(s: StepRecord) -> dict[str, Any]:
    return {
        "step": s.seq,
        "action": f"{s.stage.value}:{s.name}",
        "result": s.verdict.value,
        "stage": s.stage.value,
        "name": s.name,
        "score": s.score,
        "enforced": s.enforced,
        "latency_ms": s.latency_ms,
        "spans": [span_obj(x) for x in s.spans],
        "detail": s.detail,
        "text": s.text,
        "at": _iso(s.at),
    }


def to_compliance(record: AuditRecord) -> dict[str, Any]:
    return {
        "request_id": record.request_id,
        "input_text": record.input_text,
        "inference_steps": [_step(s) for s in record.steps],
        "output_decision": OUTPUT_DECISION[record.verdict],
        "output_text": record.output_text,
        "verdict": record.verdict.value,
        "status": record.status.value,
        "http_status": record.http_status,
        "finish_reason": record.finish_reason,
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "tenant": record.tenant,
        "key_id": record.key_id,
        "client_addr": record.client_addr,
        "endpoint": record.endpoint,
        "model_requested": record.model_requested,
        "model_served": record.model_served,
        "stream": record.stream,
        "policy_name": record.policy_name,
        "policy_version": record.policy_version,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "latency_ms": record.latency_ms,
        "ttft_ms": record.ttft_ms,
        "trace_id": record.trace_id,
        "error": record.error,
        "chain_id": record.chain_id,
        "seq": record.seq,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


def get_record(engine: Engine, request_id: str) -> AuditRecord | None:
    with engine.connect() as conn:
        return load_record(conn, request_id)


def get_request(engine: Engine, request_id: str) -> dict[str, Any] | None:
    record = get_record(engine, request_id)
    return None if record is None else to_compliance(record)


def count_records(engine: Engine, filters: RecordFilter | None = None, *, limit: int | None = None) -> int:
    q = select(func.count()).select_from(REQUESTS).where(*where(filters or RecordFilter()))
    with engine.connect() as conn:
        n = int(conn.execute(q).scalar_one())
    return n if limit is None else min(n, limit)


def iter_audit_records(
    engine: Engine,
    filters: RecordFilter | None = None,
    *,
    page_size: int = PAGE,
    limit: int | None = None,
    newest_first: bool = False,
) -> Iterator[AuditRecord]:
    """The filtered records with their steps, oldest first (``newest_first``: newest first);
    at most ``limit``. Pages by keyset, so a deep export does not re-scan skipped rows."""
    clauses = where(filters or RecordFilter())
    key = tuple_(REQUESTS.c.started_at, REQUESTS.c.request_id)
    order = (
        (REQUESTS.c.started_at.desc(), REQUESTS.c.request_id.desc())
        if newest_first
        else (REQUESTS.c.started_at, REQUESTS.c.request_id)
    )
    left = limit
    after: tuple[datetime, str] | None = None
    while left is None or left > 0:
        n = page_size if left is None else min(page_size, left)
        q = select(REQUESTS).where(*clauses)
        if after is not None:
            q = q.where(key < tuple_(*after) if newest_first else key > tuple_(*after))
        q = q.order_by(*order).limit(n)
        with engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
            if not rows:
                return
            page = list(load_page(rows))
        yield from page
        after = (rows[-1]["started_at"], rows[-1]["request_id"])
        if left is not None:
            left -= len(rows)
        if len(rows) < n:
            return


def iter_records(
    engine: Engine, filters: RecordFilter | None = None, *, page_size: int = PAGE, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    for record in iter_audit_records(engine, filters, page_size=page_size, limit=limit):
        yield to_compliance(record)


Progress = Callable[[int], None]


def write_jsonl(
    engine: Engine, out: IO[str], filters: RecordFilter | None = None, *, progress: Progress | None = None
) -> int:
    n = 0
    for doc in iter_records(engine, filters):
        out.write(orjson.dumps(doc).decode())
        out.write("\n")
        n += 1
        if progress is not None:
            progress(n)
    return n


CSV_COLUMNS = (
    "request_id", "started_at", "finished_at", "tenant", "key_id", "endpoint", "model_requested",
    "model_served", "stream", "policy_name", "policy_version", "verdict", "output_decision", "status",
    "http_status", "finish_reason", "prompt_tokens", "completion_tokens", "latency_ms", "ttft_ms",
    "trace_id", "input_text", "output_text", "error", "chain_id", "seq", "hash", "inference_steps",
)  # fmt: skip


def write_csv(
    engine: Engine, out: IO[str], filters: RecordFilter | None = None, *, progress: Progress | None = None
) -> int:
    """One row per request; ``inference_steps`` is the steps' JSON in one cell.

    Text cells that a spreadsheet would run as a formula (starting ``= + - @``, tab or CR)
    get a leading ``'``: prompts are attacker-controlled and reviewers open these in Excel.
    """
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    n = 0
    for doc in iter_records(engine, filters):
        doc["inference_steps"] = orjson.dumps(doc["inference_steps"]).decode()
        writer.writerow([_cell(doc[c]) for c in CSV_COLUMNS])
        n += 1
        if progress is not None:
            progress(n)
    return n


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
