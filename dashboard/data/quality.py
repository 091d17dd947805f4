"""Check quality from rulings: confirmed and false-positive counts per check and policy version,
their trend, the ruled firings a proposal is built from, and the ruled prompts of the
regression set.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, case, exists, func, select

from audit.read.record_filter import RecordFilter, as_utc, is_check_step, where
from audit.rows import ACTED, REQUESTS, REVIEWS, SPANS
from dashboard.data.common import R, S, bucket_time, epoch, latest_review_filter, step_detail
from dashboard.evaluation import RuledPrompt


@dataclass(frozen=True, slots=True)
class QualityRow:
    check: str
    stage: str
    policy_version: str
    confirmed: int
    false_positives: int
    escalated: int

    @property
    def precision(self) -> float | None:
        judged = self.confirmed + self.false_positives
        return self.confirmed / judged if judged else None


@dataclass(frozen=True, slots=True)
class QualityPoint:
    at: datetime
    check: str
    confirmed: int
    false_positives: int


def _ruled_steps(f: RecordFilter) -> tuple[Any, list[ColumnElement[bool]]]:
    """Acted check steps of requests whose latest ruling is in ``f``'s time range (by ruling time)."""
    rv = REVIEWS.alias("rv")
    clauses = [
        rv.c.request_id == R.request_id,
        latest_review_filter(rv),
        S.request_id == R.request_id,
        is_check_step(),
        *where(replace(f, start=None, end=None)),
    ]
    if f.start is not None:
        clauses.append(rv.c.at >= as_utc(f.start))
    if f.end is not None:
        clauses.append(rv.c.at < as_utc(f.end))
    return rv, clauses


def _ruling_counts(rv: Any) -> tuple[Any, Any, Any]:
    return (
        func.sum(case((rv.c.ruling == "confirm", 1), else_=0)),
        func.sum(case((rv.c.ruling == "false_positive", 1), else_=0)),
        func.sum(case((rv.c.ruling == "escalate", 1), else_=0)),
    )


def check_quality(engine: Engine, f: RecordFilter) -> list[QualityRow]:
    """Per check and policy version: flags that reviewers confirmed or called false positives."""
    rv, clauses = _ruled_steps(f)
    q = (
        select(S.name, S.stage, R.policy_version, *_ruling_counts(rv))
        .select_from(ACTED.join(REQUESTS, S.request_id == R.request_id).join(rv, rv.c.request_id == R.request_id))
        .where(*clauses)
        .group_by(S.name, S.stage, R.policy_version)
        .order_by(S.name, S.stage, R.policy_version)
    )
    with engine.connect() as conn:
        return [
            QualityRow(n, st, pv, int(c or 0), int(fp or 0), int(e or 0)) for n, st, pv, c, fp, e in conn.execute(q)
        ]


def quality_trend(engine: Engine, f: RecordFilter, *, bucket_s: int) -> list[QualityPoint]:
    rv, clauses = _ruled_steps(f)
    at = (epoch(engine, rv.c.at) // bucket_s).label("b")
    confirmed, fps, _ = _ruling_counts(rv)
    q = (
        select(at, S.name, confirmed, fps)
        .select_from(ACTED.join(REQUESTS, S.request_id == R.request_id).join(rv, rv.c.request_id == R.request_id))
        .where(*clauses)
        .group_by(at, S.name)
        .order_by(at)
    )
    with engine.connect() as conn:
        return [QualityPoint(bucket_time(b, bucket_s), n, int(c or 0), int(fp or 0)) for b, n, c, fp in conn.execute(q)]


@dataclass(frozen=True, slots=True)
class RuledStep:
    """One ruled firing of a check, with what a proposal needs to suggest a fix."""

    request_id: str
    ruling: str
    stage: str
    score: float | None
    #: the stored text the check read (input text for input checks, else output text)
    text: str | None
    spans: tuple[tuple[str, int, int], ...] = field(default=())
    #: the step's detail (detector evidence: cues, n-grams, tier, threshold), when recorded
    detail: dict[str, Any] = field(default_factory=dict)
    #: who sent the request, for an exception scoped to its tenant or key
    tenant: str | None = None
    key_id: str | None = None

    @property
    def role(self) -> str | None:
        """The message role the check's verdict came from (input checks), when recorded."""
        role = self.detail.get("role")
        return role if isinstance(role, str) else None


def ruled_steps(engine: Engine, check: str, stage: str, f: RecordFilter, *, limit: int = 500) -> list[RuledStep]:
    rv, clauses = _ruled_steps(f)
    q = (
        select(
            R.request_id, rv.c.ruling, S.stage, S.score, S.seq, R.input_text, R.output_text, R.steps, R.tenant, R.key_id
        )
        .select_from(ACTED.join(REQUESTS, S.request_id == R.request_id).join(rv, rv.c.request_id == R.request_id))
        .where(*clauses, S.name == check, S.stage == stage)
        .order_by(rv.c.at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = list(conn.execute(q))
        spans = _spans_of(conn, [(r.request_id, r.seq) for r in rows])
    return [
        RuledStep(
            r.request_id,
            r.ruling,
            r.stage,
            r.score,
            r.input_text if r.stage == "input" else r.output_text,
            tuple(spans.get((r.request_id, r.seq), ())),
            step_detail(r.steps, r.seq),
            r.tenant,
            r.key_id,
        )
        for r in rows
    ]


def ruled_inputs(engine: Engine, *, limit: int = 5000) -> list[RuledPrompt]:
    """Requests whose latest ruling is confirm or false positive and whose input stage acted,
    with their stored input text: the ruled part of the regression set (newest rulings first)."""
    rv = REVIEWS.alias("rv")
    q = (
        select(R.request_id, rv.c.ruling, R.input_text, R.tenant, R.key_id)
        .select_from(REQUESTS.join(rv, rv.c.request_id == R.request_id))
        .where(
            latest_review_filter(rv),
            rv.c.ruling.in_(("confirm", "false_positive")),
            R.input_text.is_not(None),
            exists().where(S.request_id == R.request_id, S.stage == "input"),
        )
        .order_by(rv.c.at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = list(conn.execute(q))
        ids = [r.request_id for r in rows]
        checks: dict[str, list[str]] = defaultdict(list)
        if ids:
            for rid, name in conn.execute(
                select(S.request_id, S.name).where(S.request_id.in_(ids), S.stage == "input").order_by(S.seq)
            ):
                checks[rid].append(name)
    return [
        RuledPrompt(r.request_id, r.ruling, r.input_text or "", tuple(checks[r.request_id]), r.tenant, r.key_id)
        for r in rows
    ]


def _spans_of(conn: Any, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], list[tuple[str, int, int]]]:

    out: dict[tuple[str, int], list[tuple[str, int, int]]] = defaultdict(list)
    ids = sorted({rid for rid, _ in keys})
    if not ids:
        return out
    wanted = set(keys)
    q = select(SPANS.c.request_id, SPANS.c.step_seq, SPANS.c.entity_type, SPANS.c.span_start, SPANS.c.span_end)
    for rid, seq, entity, start, end in conn.execute(q.where(SPANS.c.request_id.in_(ids))):
        if (rid, seq) in wanted:
            out[(rid, seq)].append((entity, start, end))
    return out
