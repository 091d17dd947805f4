"""The Overview's figures: volume by verdict per time bucket, tokens, the checks that acted most,
what monitor-mode checks would have done, and latency / time-to-first-token percentiles.

Percentiles use the ``cume_dist()`` window function (SQLite 3.25+ and PostgreSQL), computed by
the database; over more than ``PERCENTILE_SAMPLE`` requests they are read from every k-th
record of each chain (``seq % k``), which keeps a 30-day overview of a million requests at a
one-second sort instead of several, at no visible cost in a p95.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, and_, case, func, select

from audit.read.record_filter import RecordFilter, as_utc, is_check_step, where
from audit.rows import ACTED, REQUESTS, utc
from dashboard.data.common import R, S, bucket, bucket_time

PERCENTILES = (0.5, 0.95, 0.99)
PERCENTILE_SAMPLE = 20_000


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    at: datetime
    verdict: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Percentiles:
    at: datetime | None
    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True, slots=True)
class CheckCount:
    name: str
    stage: str
    verdict: str
    enforced: bool
    count: int


@dataclass(frozen=True, slots=True)
class Overview:
    total: int
    by_verdict: dict[str, int]
    #: requests where a monitor-mode check would have acted, by what it would have done
    monitor_would: dict[str, int]
    series: list[SeriesPoint]
    top_checks: list[CheckCount]
    latency: Percentiles
    ttft: Percentiles
    bucket_s: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: percentiles were read from every k-th request (1: from all of them)
    sampled_every: int = 1

    def rate(self, verdict: str) -> float:
        return self.by_verdict.get(verdict, 0) / self.total if self.total else 0.0


def overview(engine: Engine, f: RecordFilter, *, bucket_s: int, top: int = 10) -> Overview:
    w = where(f)
    at = bucket(engine, bucket_s).label("b")
    with engine.connect() as conn:
        series = [
            SeriesPoint(bucket_time(b, bucket_s), verdict, n, int(pt or 0), int(ct or 0))
            for b, verdict, n, pt, ct in conn.execute(
                select(at, R.verdict, func.count(), func.sum(R.prompt_tokens), func.sum(R.completion_tokens))
                .where(*w)
                .group_by(at, R.verdict)
                .order_by(at)
            )
        ]
        total = sum(p.requests for p in series)
        every = max(1, -(-total // PERCENTILE_SAMPLE))
        pw = [*w, R.seq % every == 0] if every > 1 else w
        steps_in_range = and_(S.request_id == R.request_id, is_check_step(), *w)
        monitor = _monitor_would(conn, steps_in_range)
        top_checks = _top_checks(conn, f, steps_in_range, top)
        latency = _percentiles(conn, R.latency_ms, pw)
        ttft = _percentiles(conn, R.ttft_ms, pw)
    by_verdict: dict[str, int] = defaultdict(int)
    for p in series:
        by_verdict[p.verdict] += p.requests
    return Overview(
        total=sum(by_verdict.values()),
        by_verdict=dict(by_verdict),
        monitor_would=monitor,
        series=series,
        top_checks=top_checks,
        latency=latency,
        ttft=ttft,
        bucket_s=bucket_s,
        prompt_tokens=sum(p.prompt_tokens for p in series),
        completion_tokens=sum(p.completion_tokens for p in series),
        sampled_every=every,
    )


@dataclass(frozen=True, slots=True)
class LatencyTrends:
    """p50 / p95 / p99 per time bucket, of the whole request and of the first token."""

    latency: list[Percentiles]
    ttft: list[Percentiles]


def latency_trends(engine: Engine, f: RecordFilter, *, bucket_s: int, sampled_every: int = 1) -> LatencyTrends:
    """Percentiles per bucket, read apart from ``overview`` because only the Overview's latency
    view draws them (a window sort per bucket: a third of the overview's query time)."""
    w = where(f)
    pw = [*w, R.seq % sampled_every == 0] if sampled_every > 1 else w
    with engine.connect() as conn:
        return LatencyTrends(
            _percentiles_series(conn, engine, R.latency_ms, pw, bucket_s),
            _percentiles_series(conn, engine, R.ttft_ms, pw, bucket_s),
        )


def _top_checks(conn: Any, f: RecordFilter, steps_in_range: ColumnElement[bool], top: int) -> list[CheckCount]:
    """The checks that acted most often on the filtered requests, by stage, verdict and mode."""
    cols = (S.name, S.stage, S.verdict, S.enforced)
    q = select(*cols, func.count().label("n"))
    ids = _id_range(conn, f)
    if ids is None:
        q = q.select_from(ACTED.join(REQUESTS, S.request_id == R.request_id)).where(steps_in_range)
    else:
        # No join: the steps of exactly these requests are one range of the acted steps' key.
        # When that range is most of the table, SQLite counts fastest from
        # ``ix_audit_acted_steps_name`` alone, already in group order, instead of reading the key
        # range and sorting 400,000 rows to group them (5x slower): hiding the key column in an
        # expression makes its planner take the index. A small range is read by key.
        key: ColumnElement[Any] = S.request_id
        if conn.dialect.name == "sqlite" and _share_of_all(conn, f) > 0.5:
            key = func.coalesce(S.request_id, "")
        q = q.where(key.between(*ids), is_check_step())
    q = q.group_by(*cols).order_by(func.count().desc(), S.name).limit(top)
    return [
        CheckCount(name, stage, verdict, bool(enforced), int(n))
        for name, stage, verdict, enforced, n in conn.execute(q)
    ]


def _id_range(conn: Any, f: RecordFilter) -> tuple[str, str] | None:
    """(first, last) request id of the filtered requests when those requests are exactly the ones
    whose ids lie between the two, else None.

    Request ids are time-ordered (``new_request_id``), so for a time range they usually are: then
    the requests' steps are one key range of ``audit_acted_steps`` and need no join. Checked, not
    assumed: the number of requests with an id in that range must equal the number filtered
    (ids from elsewhere, or clocks out of step, make the check fail and the caller join)."""
    if replace(f, start=None, end=None) != RecordFilter():
        return None
    first, last, n = conn.execute(
        select(func.min(R.request_id), func.max(R.request_id), func.count()).where(*where(f))
    ).one()
    if not n:
        return None
    inside = conn.execute(select(func.count()).where(R.request_id.between(first, last))).scalar_one()
    return (str(first), str(last)) if inside == n else None


def _share_of_all(conn: Any, f: RecordFilter) -> float:
    """About how much of the stored requests the time range holds (0-1), from the time span
    (two index probes, no count)."""
    # one aggregate per query: only then does SQLite read it from the end of the index
    first = conn.execute(select(func.min(R.started_at))).scalar()
    last = conn.execute(select(func.max(R.started_at))).scalar()
    if first is None or last is None or first == last:
        return 1.0
    lo, hi = utc(first) or first, utc(last) or last
    start = max(lo, as_utc(f.start)) if f.start else lo
    end = min(hi, as_utc(f.end)) if f.end else hi
    return max(0.0, (end - start).total_seconds()) / (hi - lo).total_seconds()


def _monitor_would(conn: Any, steps_in_range: ColumnElement[bool]) -> dict[str, int]:
    """Requests where a monitor-mode check would have acted, by verdict.

    Monitor-mode steps are usually none: one probe of the partial index
    ``ix_audit_acted_steps_monitor`` says so, and the join over every acted step in the range is
    skipped. ``enforced = false`` is written as the index states it."""
    if conn.execute(select(S.request_id).where(S.enforced == False).limit(1)).first() is None:  # noqa: E712
        return {}
    q = (
        select(S.verdict, func.count(func.distinct(S.request_id)))
        .select_from(ACTED.join(REQUESTS, S.request_id == R.request_id))
        .where(steps_in_range, S.enforced == False)  # noqa: E712
        .group_by(S.verdict)
    )
    return {v: int(n) for v, n in conn.execute(q)}


def _percentile_select(sub: Any, *group: Any) -> Select[Any]:
    return select(*group, *(func.min(case((sub.c.cd >= p, sub.c.v))).label(f"p{int(p * 100)}") for p in PERCENTILES))


def _percentiles(conn: Any, col: Any, w: list[ColumnElement[bool]]) -> Percentiles:
    sub = select(col.label("v"), func.cume_dist().over(order_by=col).label("cd")).where(*w, col.is_not(None)).subquery()
    row = conn.execute(_percentile_select(sub)).one()
    return Percentiles(None, row.p50, row.p95, row.p99)


def _percentiles_series(
    conn: Any, engine: Engine, col: Any, w: list[ColumnElement[bool]], bucket_s: int
) -> list[Percentiles]:
    at = bucket(engine, bucket_s)
    sub = (
        select(at.label("b"), col.label("v"), func.cume_dist().over(partition_by=at, order_by=col).label("cd"))
        .where(*w, col.is_not(None))
        .subquery()
    )
    q = _percentile_select(sub, sub.c.b).group_by(sub.c.b).order_by(sub.c.b)
    return [Percentiles(bucket_time(r.b, bucket_s), r.p50, r.p95, r.p99) for r in conn.execute(q)]
