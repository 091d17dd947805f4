"""Which stored requests: the one filter that ``warden audit export``, ``warden policy replay``
and the dashboard (lists, review queue, overview, replay, export) all read with, and the SQL
it becomes.

Every field is optional and all must hold; a tuple field matches any of its values.

- ``start`` / ``end``: ``start <= started_at < end``; a naive time is UTC.
- ``checks``: requests where a check of that name acted (flagged, redacted, blocked or
  errored). Only check steps count, not the upstream call, the response summary or a reasoning
  step's container; each request's acted steps are read by their key.
- ``text``: a substring of the stored input or output text, ignoring case, matched literally
  (``%`` and ``_`` are themselves). It scans the rows the other fields leave, so narrow by time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, exists, not_, or_

from audit.rows import ACTED, REQUESTS

R, S = REQUESTS.c, ACTED.c

#: stages whose steps are not check outcomes: the upstream call and the final response summary
NOT_CHECKS = ("upstream", "response")


@dataclass(frozen=True, slots=True)
class RecordFilter:
    start: datetime | None = None
    end: datetime | None = None
    tenants: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    verdicts: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    policy_versions: tuple[str, ...] = ()
    text: str = ""


def as_utc(value: datetime) -> datetime:
    """A time bound as the database compares it: UTC (naive values are taken as UTC)."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def is_check_step() -> ColumnElement[bool]:
    """Acted steps that are check outcomes: not the upstream call or response, not a reasoning
    step's container (``reasoning`` / ``step N``)."""
    return and_(S.stage.not_in(NOT_CHECKS), not_(and_(S.stage == "reasoning", S.name.like("step %"))))


def where(f: RecordFilter) -> list[ColumnElement[bool]]:
    """``f`` as ``WHERE`` clauses on ``audit_requests``."""
    clauses: list[ColumnElement[bool]] = []
    if f.start is not None:
        clauses.append(R.started_at >= as_utc(f.start))
    if f.end is not None:
        clauses.append(R.started_at < as_utc(f.end))
    if f.tenants:
        clauses.append(R.tenant.in_(f.tenants))
    if f.models:
        clauses.append(R.model_requested.in_(f.models))
    if f.verdicts:
        clauses.append(R.verdict.in_(f.verdicts))
    if f.policy_versions:
        clauses.append(R.policy_version.in_(f.policy_versions))
    if f.checks:
        # A correlated EXISTS (one probe of the request's acted steps by their key), not an IN
        # over the name index: a list page stops after 50 matches, where IN first collects every
        # request the check ever acted on (100,000 requests, all with `pii`: 8 ms against 0.58 s).
        acted = and_(S.request_id == R.request_id, S.name.in_(f.checks), is_check_step())
        clauses.append(exists().where(acted))
    term = f.text.strip()
    if term:
        clauses.append(
            or_(R.input_text.icontains(term, autoescape=True), R.output_text.icontains(term, autoescape=True))
        )
    return clauses
