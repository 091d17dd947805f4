"""Audit records to table rows and back, and loading records with their steps in pages."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, select

from audit.models import Base, Ruling
from audit.record import AuditRecord, SpanRecord, Stage, Status, StepRecord, Verdict
from audit.review import ReviewRecord

REQUESTS = Base.metadata.tables["audit_requests"]
STEPS = Base.metadata.tables["audit_steps"]
SPANS = Base.metadata.tables["audit_spans"]
REVIEWS = Base.metadata.tables["audit_reviews"]
CHAINS = Base.metadata.tables["audit_chains"]
CHECKPOINTS = Base.metadata.tables["audit_checkpoints"]

_REQUEST_FIELDS = (
    "request_id", "chain_id", "seq", "prev_hash", "hash", "started_at", "finished_at", "tenant",
    "key_id", "client_addr", "endpoint", "model_requested", "model_served", "stream",
    "policy_name", "policy_version", "input_text", "output_text", "http_status", "finish_reason",
    "prompt_tokens", "completion_tokens", "latency_ms", "ttft_ms", "trace_id", "error",
)  # fmt: skip


def request_row(r: AuditRecord) -> dict[str, Any]:
    row = {name: getattr(r, name) for name in _REQUEST_FIELDS}
    row["verdict"] = r.verdict.value
    row["status"] = r.status.value
    return row


def step_rows(r: AuditRecord) -> list[dict[str, Any]]:
    return [
        {
            "request_id": r.request_id,
            "seq": s.seq,
            "stage": s.stage.value,
            "name": s.name,
            "verdict": s.verdict.value,
            "score": s.score,
            "latency_ms": s.latency_ms,
            "enforced": s.enforced,
            "detail": s.detail,
            "text": s.text,
            "at": s.at,
        }
        for s in r.steps
    ]


def span_rows(r: AuditRecord) -> list[dict[str, Any]]:
    return [
        {
            "request_id": r.request_id,
            "step_seq": s.seq,
            "idx": i,
            "entity_type": sp.entity_type,
            "span_start": sp.start,
            "span_end": sp.end,
            "score": sp.score,
            "fingerprint": sp.fingerprint,
        }
        for s in r.steps
        for i, sp in enumerate(s.spans)
    ]


def review_row(r: ReviewRecord) -> dict[str, Any]:
    return {
        "review_id": r.review_id,
        "chain_id": r.chain_id,
        "seq": r.seq,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
        "request_id": r.request_id,
        "reviewer": r.reviewer,
        "ruling": r.ruling.value,
        "note": r.note,
        "at": r.at,
    }


def utc(value: datetime | None) -> datetime | None:
    """Stored timestamps are UTC; SQLite gives them back naive."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def record_from_rows(
    req: RowMapping, steps: Sequence[RowMapping], spans: Mapping[int, list[SpanRecord]]
) -> AuditRecord:
    """Rebuild a record exactly as stored (no normalizing), so verify sees any edit.

    Raises ``ValueError`` when a stored value is not a valid enum member.
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
        steps=[
            StepRecord(
                seq=s["seq"],
                stage=Stage(s["stage"]),
                name=s["name"],
                verdict=Verdict(s["verdict"]),
                score=s["score"],
                spans=spans.get(s["seq"], []),
                latency_ms=s["latency_ms"],
                enforced=s["enforced"],
                detail=s["detail"],
                text=s["text"],
                at=utc(s["at"]),
            )
            for s in steps
        ],
        chain_id=req["chain_id"],
        seq=req["seq"],
        prev_hash=req["prev_hash"],
        hash=req["hash"],
    )


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


def load_children(
    conn: Connection, request_ids: Sequence[str]
) -> tuple[dict[str, list[RowMapping]], dict[str, dict[int, list[SpanRecord]]]]:
    """Steps (in order) and spans of the given requests, grouped by request id."""
    steps: dict[str, list[RowMapping]] = defaultdict(list)
    spans: dict[str, dict[int, list[SpanRecord]]] = defaultdict(lambda: defaultdict(list))
    if not request_ids:
        return steps, spans
    ids = list(request_ids)
    q_steps = select(STEPS).where(STEPS.c.request_id.in_(ids)).order_by(STEPS.c.request_id, STEPS.c.seq)
    for row in conn.execute(q_steps).mappings():
        steps[row["request_id"]].append(row)
    q_spans = (
        select(SPANS).where(SPANS.c.request_id.in_(ids)).order_by(SPANS.c.request_id, SPANS.c.step_seq, SPANS.c.idx)
    )
    for row in conn.execute(q_spans).mappings():
        spans[row["request_id"]][row["step_seq"]].append(
            SpanRecord(
                entity_type=row["entity_type"],
                start=row["span_start"],
                end=row["span_end"],
                score=row["score"],
                fingerprint=row["fingerprint"],
            )
        )
    return steps, spans


def load_page(conn: Connection, request_rows: Sequence[RowMapping]) -> Iterator[AuditRecord]:
    steps, spans = load_children(conn, [r["request_id"] for r in request_rows])
    for req in request_rows:
        rid = req["request_id"]
        yield record_from_rows(req, steps.get(rid, []), spans.get(rid, {}))


def load_record(conn: Connection, request_id: str) -> AuditRecord | None:
    req = conn.execute(select(REQUESTS).where(REQUESTS.c.request_id == request_id)).mappings().first()
    if req is None:
        return None
    return next(load_page(conn, [req]))


def select_requests() -> Select[Any]:
    return select(REQUESTS)
