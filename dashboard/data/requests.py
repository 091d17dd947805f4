"""Requests: one page of a filtered list with what a reviewer needs per row (the prompt as
stored, the check that decided, its score and threshold, the latest ruling), one request, the
newest requests (Live), and the requests a replay runs over.

A page's ids are found first on a narrow index (filter, sort, offset), then only those rows'
wide columns are read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, func, or_, select

from audit.read.record_filter import RecordFilter, as_utc, is_check_step, where
from audit.record import AuditRecord, Verdict
from audit.review import ReviewRecord
from audit.rows import REQUESTS, REVIEWS, load_page, load_record, review_from_row, utc
from dashboard.data.common import R, S, V, latest_review_filter, step_detail

#: characters of the stored prompt shown in lists
SNIPPET_CHARS = 160


@dataclass(frozen=True, slots=True)
class RequestSummary:
    request_id: str
    started_at: datetime
    tenant: str
    model_requested: str
    model_served: str | None
    endpoint: str
    stream: bool
    verdict: str
    status: str
    http_status: int
    latency_ms: float | None
    ttft_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    policy_name: str
    policy_version: str
    #: checks that did something (flag / redact / block / error), in step order
    acted: tuple[str, ...] = ()
    #: the latest ruling, if a reviewer ruled
    ruling: str | None = None
    #: the start of the prompt as stored (redacted per ``audit.store_text``); None when not stored
    snippet: str | None = None
    #: the check that decided (the strongest enforced outcome), its score and the threshold it crossed
    decided_by: str | None = None
    score: float | None = None
    threshold: float | None = None


_SUMMARY_COLS = (
    func.substr(R.input_text, 1, SNIPPET_CHARS).label("snippet"),
    R.request_id,
    R.started_at,
    R.tenant,
    R.model_requested,
    R.model_served,
    R.endpoint,
    R.stream,
    R.verdict,
    R.status,
    R.http_status,
    R.latency_ms,
    R.ttft_ms,
    R.prompt_tokens,
    R.completion_tokens,
    R.policy_name,
    R.policy_version,
)


def count_requests(engine: Engine, f: RecordFilter) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(REQUESTS).where(*where(f))).scalar_one())


def request_page(engine: Engine, f: RecordFilter, *, limit: int = 50, offset: int = 0) -> list[RequestSummary]:
    """One page of requests, newest first."""
    return summaries(engine, page_query(where(f), (R.started_at.desc(), R.request_id.desc()), limit, offset))


def page_query(clauses: list[ColumnElement[bool]], order: tuple[Any, ...], limit: int, offset: int) -> Select[Any]:
    """One page of summaries: the page's ids are found first from the narrow covering index
    (filter, sort, offset), then only those rows' wide columns are read. Sorting the wide rows
    themselves read every matching record (steps and texts) to keep 50 of them."""
    ids = select(R.request_id).where(*clauses).order_by(*order).limit(limit).offset(offset).subquery()
    return select(*_SUMMARY_COLS).join(ids, ids.c.request_id == R.request_id).order_by(*order)


def summaries(engine: Engine, q: Select[Any]) -> list[RequestSummary]:
    with engine.connect() as conn:
        rows = list(conn.execute(q).mappings())
        ids = [r["request_id"] for r in rows]
        acted = _acted_steps(conn, ids)
        rulings = _latest_rulings(conn, ids)
        deciders = {rid: d for rid, steps in acted.items() if (d := _decider(steps))}
        details = _details(conn, {rid: d[1] for rid, d in deciders.items()})
    out = []
    for r in rows:
        values = dict(r)
        values["started_at"] = utc(values["started_at"])
        rid = r["request_id"]
        decider = deciders.get(rid)
        out.append(
            RequestSummary(
                **values,
                acted=tuple(dict.fromkeys(step[1] for step in acted.get(rid, []))),
                ruling=rulings.get(rid),
                decided_by=decider[0] if decider else None,
                score=decider[2] if decider else None,
                threshold=_float(details.get(rid, {}).get("threshold")) if decider else None,
            )
        )
    return out


#: (seq, name, verdict, score, enforced) of a request's acted check steps
ActedStep = tuple[int, str, str, float | None, bool]


def _acted_steps(conn: Any, ids: Sequence[str]) -> dict[str, list[ActedStep]]:
    if not ids:
        return {}
    q = (
        select(S.request_id, S.seq, S.name, S.verdict, S.score, S.enforced)
        .where(S.request_id.in_(ids), is_check_step())
        .order_by(S.request_id, S.seq)
    )
    found: dict[str, list[ActedStep]] = defaultdict(list)
    for rid, seq, name, verdict, score, enforced in conn.execute(q):
        found[rid].append((seq, name, verdict, score, bool(enforced)))
    return found


def _decider(steps: Sequence[ActedStep]) -> tuple[str, int, float | None] | None:
    """(name, seq, score) of the step that decided: the strongest enforced verdict, first in step
    order (a monitor-mode step when nothing was enforced)."""

    def rank(step: ActedStep) -> tuple[int, int]:
        try:
            strength = Verdict(step[2]).rank
        except ValueError:
            strength = 0
        return (1 if step[4] else 0, strength)

    best: ActedStep | None = None
    for step in steps:
        if best is None or rank(step) > rank(best):
            best = step
    return (best[1], best[0], best[3]) if best else None


def _details(conn: Any, seqs: dict[str, int]) -> dict[str, dict[str, Any]]:
    """The detail of one step per request (``{request_id: seq}``), read from the steps documents."""
    if not seqs:
        return {}
    q = select(R.request_id, R.steps).where(R.request_id.in_(list(seqs)))
    return {rid: step_detail(steps, seqs[rid]) for rid, steps in conn.execute(q)}


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _latest_rulings(conn: Any, ids: Sequence[str]) -> dict[str, str]:
    if not ids:
        return {}
    rv = REVIEWS.alias("rv")
    q = select(rv.c.request_id, rv.c.ruling).where(rv.c.request_id.in_(ids), latest_review_filter(rv))
    return {str(rid): str(ruling) for rid, ruling in conn.execute(q)}


def load_request(engine: Engine, request_id: str) -> AuditRecord | None:
    with engine.connect() as conn:
        return load_record(conn, request_id)


def reviews_for(engine: Engine, request_id: str) -> list[ReviewRecord]:
    with engine.connect() as conn:
        rows = conn.execute(select(REVIEWS).where(V.request_id == request_id).order_by(V.at, V.review_id))
        return [review_from_row(r) for r in rows.mappings()]


@dataclass(frozen=True, slots=True)
class ReplayInput:
    request_id: str
    started_at: datetime
    input_text: str | None
    output_text: str | None
    #: the verdict recorded when the request ran
    verdict: str
    #: who sent it, for exceptions scoped to a tenant or key
    tenant: str = ""
    key_id: str = ""


def replay_inputs(engine: Engine, f: RecordFilter, *, limit: int) -> list[ReplayInput]:
    """The newest ``limit`` filtered requests that have stored text."""
    q = (
        select(R.request_id, R.started_at, R.input_text, R.output_text, R.verdict, R.tenant, R.key_id)
        .where(*where(f), or_(R.input_text.is_not(None), R.output_text.is_not(None)))
        .order_by(R.started_at.desc(), R.request_id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            ReplayInput(
                r.request_id,
                utc(r.started_at) or r.started_at,
                r.input_text,
                r.output_text,
                r.verdict,
                r.tenant,
                r.key_id,
            )
            for r in conn.execute(q)
        ]


# -- live (database side) ------------------------------------------------------------------


def recent_records(engine: Engine, *, since: datetime | None, limit: int = 20) -> list[AuditRecord]:
    """The newest finished requests with their steps (the live page's view of the database)."""
    q = select(REQUESTS).order_by(R.started_at.desc(), R.request_id.desc()).limit(limit)
    if since is not None:
        q = q.where(R.started_at >= as_utc(since))
    with engine.connect() as conn:
        return list(load_page(list(conn.execute(q).mappings())))


def stored_ids(engine: Engine, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` have an audit record (a request in flight has none yet)."""
    if not ids:
        return set()
    with engine.connect() as conn:
        return set(conn.execute(select(R.request_id).where(R.request_id.in_(list(ids)))).scalars())
