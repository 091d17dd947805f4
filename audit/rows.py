"""Stored audit rows back to records, and loading records in pages.

A request row carries its steps as one document (``audit.models``); the index rows in
``audit_acted_steps`` and ``audit_spans`` are derived from it (``index_of``) and are not
needed to read a record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, RowMapping, Select, select

from audit.canonical import canonical, record_obj, step_from_obj
from audit.commitments import FORMAT as COMMITTED_FORMAT
from audit.commitments import is_committed, plain_steps, top_commitments
from audit.models import Base
from audit.record import AuditRecord, Ruling, Status, Verdict
from audit.review import ReviewRecord

REQUESTS = Base.metadata.tables["audit_requests"]
ACTED = Base.metadata.tables["audit_acted_steps"]
SPANS = Base.metadata.tables["audit_spans"]
REVIEWS = Base.metadata.tables["audit_reviews"]
CHAINS = Base.metadata.tables["audit_chains"]
CHECKPOINTS = Base.metadata.tables["audit_checkpoints"]
ERASURES = Base.metadata.tables["audit_erasures"]


def utc(value: datetime | None) -> datetime | None:
    """Stored timestamps are UTC; SQLite gives them back naive."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def record_from_row(req: RowMapping, *, steps: bool = True) -> AuditRecord:
    """Rebuild a record as stored (no normalizing); ``steps=False`` leaves its steps out.

    Raises ``ValueError`` when a stored value is not a valid enum member or the steps are not
    JSON.
    """
    return AuditRecord(
        request_id=req["request_id"],
        started_at=_utc(req["started_at"]),
        tenant=req["tenant"],
        key_id=req["key_id"],
        endpoint=req["endpoint"],
        model_requested=req["model_requested"],
        stream=req["stream"],
        policy_name=req["policy_name"],
        policy_version=req["policy_version"],
        client_addr=req["client_addr"],
        finished_at=utc(req["finished_at"]),
        model_served=req["model_served"],
        input_text=req["input_text"],
        output_text=req["output_text"],
        verdict=Verdict(req["verdict"]),
        status=Status(req["status"]),
        http_status=req["http_status"],
        finish_reason=req["finish_reason"],
        prompt_tokens=req["prompt_tokens"],
        completion_tokens=req["completion_tokens"],
        latency_ms=req["latency_ms"],
        ttft_ms=req["ttft_ms"],
        trace_id=req["trace_id"],
        error=req["error"],
        steps=[step_from_obj(s) for s in stored_steps(req)] if steps else [],
        chain_id=req["chain_id"],
        seq=req["seq"],
        prev_hash=req["prev_hash"],
        hash=req["hash"],
    )


def stored_steps(req: RowMapping) -> list[dict[str, Any]]:
    """A stored record's steps with their texts (format 2 keeps those beside the document)."""
    steps: list[dict[str, Any]] = orjson.loads(req["steps"])
    if is_committed(req):
        return plain_steps(steps, req["texts"])
    return steps


def stored_canonical(req: RowMapping) -> bytes:
    """The canonical bytes of a stored record (what its hash covers), from its row alone.

    The steps document goes in verbatim, so any change to it, even one that parses to the
    same steps, changes these bytes.
    """
    obj = record_obj(record_from_row(req, steps=False), with_hashes=False)
    obj["steps"] = orjson.Fragment(req["steps"].encode())
    if is_committed(req):
        obj["v"] = COMMITTED_FORMAT
        obj["input_text"], obj["output_text"], obj["texts"] = top_commitments(req)
    return canonical(obj)


#: an acted-step index row, without the request id: (seq, stage, name, verdict, score, enforced)
ActedKey = tuple[int, str, str, str, float | None, bool]
#: a span index row, without the request id:
#: (step_seq, idx, entity_type, span_start, span_end, score, fingerprint)
SpanKey = tuple[int, int, str, int, int, float, str | None]


def index_of(
    steps: Sequence[Mapping[str, Any]], fps: Mapping[str, str] | None = None
) -> tuple[list[ActedKey], list[SpanKey]]:
    """The index rows a record's steps (as canonical objects) must have.

    ``fps``: for a steps document whose fingerprints are commitments (``audit.commitments``),
    the fingerprints themselves by "step.span" position (missing: erased, null).
    """
    acted: list[ActedKey] = [
        (s["seq"], s["stage"], s["name"], verdict, s["score"], s["enforced"])
        for s in steps
        if (verdict := s["verdict"]) != "pass"
    ]
    spans: list[SpanKey] = [
        (
            s["seq"], i, sp["entity_type"], sp["start"], sp["end"], sp["score"],
            sp["fingerprint"] if fps is None else fps.get(f"{k}.{i}"),
        )
        for k, s in enumerate(steps)
        if s["spans"]
        for i, sp in enumerate(s["spans"])
    ]  # fmt: skip
    return acted, spans


def stored_index(conn: Connection, request_ids: Sequence[str]) -> dict[str, tuple[list[ActedKey], list[SpanKey]]]:
    """The index rows stored for these requests, in the order ``index_of`` gives them."""
    out: dict[str, tuple[list[ActedKey], list[SpanKey]]] = defaultdict(lambda: ([], []))
    if not request_ids:
        return out
    ids = list(request_ids)
    a = ACTED.c
    q = select(a.request_id, a.seq, a.stage, a.name, a.verdict, a.score, a.enforced).where(a.request_id.in_(ids))
    for rid, *row in conn.execute(q.order_by(a.request_id, a.seq)):
        out[rid][0].append((row[0], row[1], row[2], row[3], row[4], bool(row[5])))
    p = SPANS.c
    cols = (p.request_id, p.step_seq, p.idx, p.entity_type, p.span_start, p.span_end, p.score, p.fingerprint)
    for rid, *row in conn.execute(select(*cols).where(p.request_id.in_(ids)).order_by(p.request_id, p.step_seq, p.idx)):
        out[rid][1].append((row[0], row[1], row[2], row[3], row[4], row[5], row[6]))
    return out


def review_from_row(row: RowMapping) -> ReviewRecord:
    return ReviewRecord(
        request_id=row["request_id"],
        reviewer=row["reviewer"],
        ruling=Ruling(row["ruling"]),
        note=row["note"],
        at=_utc(row["at"]),
        review_id=row["review_id"],
        chain_id=row["chain_id"],
        seq=row["seq"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def load_page(request_rows: Sequence[RowMapping]) -> Iterator[AuditRecord]:
    for req in request_rows:
        yield record_from_row(req)


def load_record(conn: Connection, request_id: str) -> AuditRecord | None:
    req = conn.execute(select(REQUESTS).where(REQUESTS.c.request_id == request_id)).mappings().first()
    if req is None:
        return None
    return record_from_row(req)


def select_requests() -> Select[Any]:
    return select(REQUESTS)
