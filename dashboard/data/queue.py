"""The review queue: requests waiting for a ruling, escalated, or ruled."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from sqlalchemy import ColumnElement, Engine, and_, exists, func, not_, select

from audit.read.record_filter import RecordFilter, where
from audit.rows import REQUESTS, REVIEWS
from dashboard.data.common import R, V, latest_review_filter
from dashboard.data.requests import RequestSummary, page_query, summaries

#: request verdicts that need a reviewer's ruling
REVIEWABLE = ("flag", "block", "error")
QueueState = Literal["unreviewed", "escalated", "ruled"]


def _queue_where(f: RecordFilter, state: QueueState) -> list[ColumnElement[bool]]:
    clauses = where(f if f.verdicts else replace(f, verdicts=REVIEWABLE))
    any_review = exists().where(V.request_id == R.request_id)
    if state == "unreviewed":
        clauses.append(not_(any_review))
        return clauses
    rv = REVIEWS.alias("rv")
    latest = and_(rv.c.request_id == R.request_id, latest_review_filter(rv))
    if state == "escalated":
        clauses.append(exists().where(latest, rv.c.ruling == "escalate"))
    else:
        clauses.append(exists().where(latest, rv.c.ruling != "escalate"))
    return clauses


def queue_count(engine: Engine, f: RecordFilter, state: QueueState = "unreviewed") -> int:
    with engine.connect() as conn:
        q = select(func.count()).select_from(REQUESTS).where(*_queue_where(f, state))
        return int(conn.execute(q).scalar_one())


def queue_page(
    engine: Engine, f: RecordFilter, state: QueueState = "unreviewed", *, limit: int = 50, offset: int = 0
) -> list[RequestSummary]:
    """Requests waiting for a ruling, oldest first (work the queue in the order things happened)."""
    q = page_query(_queue_where(f, state), (R.started_at.asc(), R.request_id.asc()), limit, offset)
    return summaries(engine, q)
