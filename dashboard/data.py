"""Every database query the dashboard makes, as functions over an ``Engine`` returning typed values.

Queries filter, group, sort and page in the database (``WHERE`` / ``GROUP BY`` / ``LIMIT`` /
``OFFSET``), so a page costs the same on a thousand records as on a million; Python only ever
holds one page, one chart's buckets, or a capped export stream. Nothing here imports
Streamlit: the pages call these, and tests call them directly.

Percentiles use the ``cume_dist()`` window function (SQLite 3.25+ and PostgreSQL), computed by
the database; over more than ``PERCENTILE_SAMPLE`` requests they are read from every k-th
record of each chain (``seq % k``), which keeps a 30-day overview of a million requests at a
one-second sort instead of several, at no visible cost in a p95. Time buckets are whole
multiples of ``bucket_s`` seconds since the epoch, from the dialect's own epoch function.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Engine,
    Integer,
    Select,
    and_,
    case,
    cast,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
)

from audit.models import Base
from audit.record import AuditRecord
from audit.review import ReviewRecord
from audit.rows import ACTED, REQUESTS, REVIEWS, load_page, load_record, review_from_row, utc
from dashboard.evaluation import RuledPrompt

USERS = Base.metadata.tables["users"]
POLICY_VERSIONS = Base.metadata.tables["policy_versions"]
R, S, V = REQUESTS.c, ACTED.c, REVIEWS.c

#: request verdicts that need a reviewer's ruling
REVIEWABLE = ("flag", "block", "error")
QueueState = Literal["unreviewed", "escalated", "ruled"]
PERCENTILES = (0.5, 0.95, 0.99)
PERCENTILE_SAMPLE = 20_000
#: characters of the stored prompt shown in lists
SNIPPET_CHARS = 160


# -- filters -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filters:
    """The explorer's filters; the review queue, replay and export use the same ones."""

    start: datetime | None = None
    end: datetime | None = None
    tenants: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    verdicts: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    policy_versions: tuple[str, ...] = ()
    text: str = ""


def _utc_naive(value: datetime) -> datetime:
    """Bind values as the database stores them: UTC (SQLite keeps it naive)."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


#: stages whose steps are not check outcomes: the upstream call and the final response summary
NOT_CHECKS = ("upstream", "response")


def _is_check_step() -> ColumnElement[bool]:
    """Steps that are check outcomes: not the upstream call or response, not a reasoning step's container."""
    return and_(S.stage.not_in(NOT_CHECKS), not_(and_(S.stage == "reasoning", S.name.like("step %"))))


def _acted(check_names: Sequence[str] = ()) -> ColumnElement[bool]:
    """A step of the current request where a check did something (the acted-steps index)."""
    cond = and_(S.request_id == R.request_id, _is_check_step())
    if check_names:
        cond = and_(cond, S.name.in_(check_names))
    return exists().where(cond)


def where(f: Filters) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if f.start is not None:
        clauses.append(R.started_at >= _utc_naive(f.start))
    if f.end is not None:
        clauses.append(R.started_at < _utc_naive(f.end))
    if f.tenants:
        clauses.append(R.tenant.in_(f.tenants))
    if f.models:
        clauses.append(R.model_requested.in_(f.models))
    if f.verdicts:
        clauses.append(R.verdict.in_(f.verdicts))
    if f.policy_versions:
        clauses.append(R.policy_version.in_(f.policy_versions))
    if f.checks:
        clauses.append(_acted(f.checks))
    if f.text.strip():
        term = f.text.strip()
        clauses.append(
            or_(R.input_text.icontains(term, autoescape=True), R.output_text.icontains(term, autoescape=True))
        )
    return clauses


# -- request explorer ----------------------------------------------------------------------


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


def count_requests(engine: Engine, f: Filters) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(REQUESTS).where(*where(f))).scalar_one())


def request_page(engine: Engine, f: Filters, *, limit: int = 50, offset: int = 0) -> list[RequestSummary]:
    """One page of requests, newest first."""
    return _summaries(engine, _page(where(f), (R.started_at.desc(), R.request_id.desc()), limit, offset))


def _page(clauses: list[ColumnElement[bool]], order: tuple[Any, ...], limit: int, offset: int) -> Select[Any]:
    """One page of summaries: the page's ids are found first from the narrow covering index
    (filter, sort, offset), then only those rows' wide columns are read. Sorting the wide rows
    themselves read every matching record (steps and texts) to keep 50 of them."""
    ids = select(R.request_id).where(*clauses).order_by(*order).limit(limit).offset(offset).subquery()
    return select(*_SUMMARY_COLS).join(ids, ids.c.request_id == R.request_id).order_by(*order)


def _summaries(engine: Engine, q: Select[Any]) -> list[RequestSummary]:
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
        .where(S.request_id.in_(ids), _is_check_step())
        .order_by(S.request_id, S.seq)
    )
    found: dict[str, list[ActedStep]] = defaultdict(list)
    for rid, seq, name, verdict, score, enforced in conn.execute(q):
        found[rid].append((seq, name, verdict, score, bool(enforced)))
    return found


def _decider(steps: Sequence[ActedStep]) -> tuple[str, int, float | None] | None:
    """(name, seq, score) of the step that decided: the strongest enforced verdict, first in step
    order (a monitor-mode step when nothing was enforced)."""
    from audit.record import Verdict

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
    return {rid: _step_detail(steps, seqs[rid]) for rid, steps in conn.execute(q)}


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _latest_review_filter(alias: Any) -> ColumnElement[bool]:
    """``alias`` is the newest review of its request (ties broken by review id)."""
    later = REVIEWS.alias("later")
    return not_(
        exists().where(
            later.c.request_id == alias.c.request_id,
            or_(later.c.at > alias.c.at, and_(later.c.at == alias.c.at, later.c.review_id > alias.c.review_id)),
        )
    )


def _latest_rulings(conn: Any, ids: Sequence[str]) -> dict[str, str]:
    if not ids:
        return {}
    rv = REVIEWS.alias("rv")
    q = select(rv.c.request_id, rv.c.ruling).where(rv.c.request_id.in_(ids), _latest_review_filter(rv))
    return {str(rid): str(ruling) for rid, ruling in conn.execute(q)}


def iter_records(engine: Engine, f: Filters, *, max_rows: int, chunk: int = 500) -> Iterator[AuditRecord]:
    """The filtered records with their steps, newest first, for export; at most ``max_rows``.

    Pages by keyset (``started_at``, ``request_id``), so a deep export does not re-scan skipped rows.
    """
    sent = 0
    after: tuple[datetime, str] | None = None
    with engine.connect() as conn:
        while sent < max_rows:
            q = select(REQUESTS).where(*where(f))
            if after is not None:
                at, rid = after
                q = q.where(or_(R.started_at < at, and_(R.started_at == at, R.request_id < rid)))
            q = q.order_by(R.started_at.desc(), R.request_id.desc()).limit(min(chunk, max_rows - sent))
            rows = list(conn.execute(q).mappings())
            if not rows:
                return
            after = (rows[-1]["started_at"], rows[-1]["request_id"])
            for record in load_page(rows):
                sent += 1
                yield record


# -- filter choices ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FilterOptions:
    tenants: tuple[str, ...]
    models: tuple[str, ...]
    policy_versions: tuple[tuple[str, str], ...]  # (version, policy name)
    checks: tuple[str, ...]


def filter_options(engine: Engine, start: datetime | None = None, end: datetime | None = None) -> FilterOptions:
    """Distinct values seen in the time range, for the filter widgets."""
    f = Filters(start=start, end=end)
    w = where(f)
    with engine.connect() as conn:
        tenants = conn.execute(select(R.tenant).where(*w).distinct().order_by(R.tenant).limit(500)).scalars()
        tenants_t = tuple(tenants)
        models = tuple(
            conn.execute(
                select(R.model_requested).where(*w).distinct().order_by(R.model_requested).limit(500)
            ).scalars()
        )
        versions = tuple(
            (v, n)
            for v, n in conn.execute(
                select(R.policy_version, R.policy_name).where(*w).distinct().order_by(R.policy_name).limit(500)
            )
        )
        checks = _check_names(conn, limit=500)
    return FilterOptions(tenants_t, models, versions, checks)


def _check_names(conn: Any, *, limit: int) -> tuple[str, ...]:
    """Names of checks that ever acted, in order: a skip scan of ``ix_audit_acted_steps_name``.

    ``SELECT DISTINCT name`` walks every acted step (400,000 index entries for 100,000
    requests); stepping from one (name, stage) pair to the next with ``min()`` costs one index
    probe per pair, and there are only as many pairs as checks (plus reasoning steps)."""
    names: list[str] = []
    name = conn.execute(select(func.min(S.name))).scalar()
    while name is not None and len(names) < limit:
        stage = conn.execute(select(func.min(S.stage)).where(S.name == name)).scalar()
        while stage is not None:
            if stage not in NOT_CHECKS and not (stage == "reasoning" and name.startswith("step ")):
                names.append(name)
                break
            stage = conn.execute(select(func.min(S.stage)).where(S.name == name, S.stage > stage)).scalar()
        name = conn.execute(select(func.min(S.name)).where(S.name > name)).scalar()
    return tuple(names)


# -- overview ------------------------------------------------------------------------------


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


def _epoch(engine: Engine, col: Any) -> ColumnElement[int]:
    if engine.dialect.name == "sqlite":
        return cast(func.strftime("%s", col), Integer)
    return cast(func.extract("epoch", col), BigInteger)


def _bucket(engine: Engine, bucket_s: int) -> ColumnElement[int]:
    return _epoch(engine, R.started_at) // bucket_s


def _bucket_time(bucket: int | None, bucket_s: int) -> datetime:
    return datetime.fromtimestamp(int(bucket or 0) * bucket_s, UTC)


def overview(engine: Engine, f: Filters, *, bucket_s: int, top: int = 10) -> Overview:
    w = where(f)
    bucket = _bucket(engine, bucket_s).label("b")
    with engine.connect() as conn:
        series = [
            SeriesPoint(_bucket_time(b, bucket_s), verdict, n, int(pt or 0), int(ct or 0))
            for b, verdict, n, pt, ct in conn.execute(
                select(bucket, R.verdict, func.count(), func.sum(R.prompt_tokens), func.sum(R.completion_tokens))
                .where(*w)
                .group_by(bucket, R.verdict)
                .order_by(bucket)
            )
        ]
        total = sum(p.requests for p in series)
        every = max(1, -(-total // PERCENTILE_SAMPLE))
        pw = [*w, R.seq % every == 0] if every > 1 else w
        steps_in_range = and_(S.request_id == R.request_id, _is_check_step(), *w)
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


def latency_trends(engine: Engine, f: Filters, *, bucket_s: int, sampled_every: int = 1) -> LatencyTrends:
    """Percentiles per bucket, read apart from ``overview`` because only the Overview's latency
    view draws them (a window sort per bucket: a third of the overview's query time)."""
    w = where(f)
    pw = [*w, R.seq % sampled_every == 0] if sampled_every > 1 else w
    with engine.connect() as conn:
        return LatencyTrends(
            _percentiles_series(conn, engine, R.latency_ms, pw, bucket_s),
            _percentiles_series(conn, engine, R.ttft_ms, pw, bucket_s),
        )


def _top_checks(conn: Any, f: Filters, steps_in_range: ColumnElement[bool], top: int) -> list[CheckCount]:
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
        q = q.where(key.between(*ids), _is_check_step())
    q = q.group_by(*cols).order_by(func.count().desc(), S.name).limit(top)
    return [
        CheckCount(name, stage, verdict, bool(enforced), int(n))
        for name, stage, verdict, enforced, n in conn.execute(q)
    ]


def _id_range(conn: Any, f: Filters) -> tuple[str, str] | None:
    """(first, last) request id of the filtered requests when those requests are exactly the ones
    whose ids lie between the two, else None.

    Request ids are time-ordered (``new_request_id``), so for a time range they usually are: then
    the requests' steps are one key range of ``audit_acted_steps`` and need no join. Checked, not
    assumed: the number of requests with an id in that range must equal the number filtered
    (ids from elsewhere, or clocks out of step, make the check fail and the caller join)."""
    if replace(f, start=None, end=None) != Filters():
        return None
    first, last, n = conn.execute(
        select(func.min(R.request_id), func.max(R.request_id), func.count()).where(*where(f))
    ).one()
    if not n:
        return None
    inside = conn.execute(select(func.count()).where(R.request_id.between(first, last))).scalar_one()
    return (str(first), str(last)) if inside == n else None


def _share_of_all(conn: Any, f: Filters) -> float:
    """About how much of the stored requests the time range holds (0-1), from the time span
    (two index probes, no count)."""
    # one aggregate per query: only then does SQLite read it from the end of the index
    first = conn.execute(select(func.min(R.started_at))).scalar()
    last = conn.execute(select(func.max(R.started_at))).scalar()
    if first is None or last is None or first == last:
        return 1.0
    lo, hi = utc(first) or first, utc(last) or last
    start = max(lo, _utc_naive(f.start)) if f.start else lo
    end = min(hi, _utc_naive(f.end)) if f.end else hi
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
    bucket = _bucket(engine, bucket_s)
    sub = (
        select(bucket.label("b"), col.label("v"), func.cume_dist().over(partition_by=bucket, order_by=col).label("cd"))
        .where(*w, col.is_not(None))
        .subquery()
    )
    q = _percentile_select(sub, sub.c.b).group_by(sub.c.b).order_by(sub.c.b)
    return [Percentiles(_bucket_time(r.b, bucket_s), r.p50, r.p95, r.p99) for r in conn.execute(q)]


# -- one request ---------------------------------------------------------------------------


def load_request(engine: Engine, request_id: str) -> AuditRecord | None:
    with engine.connect() as conn:
        return load_record(conn, request_id)


def reviews_for(engine: Engine, request_id: str) -> list[ReviewRecord]:
    with engine.connect() as conn:
        rows = conn.execute(select(REVIEWS).where(V.request_id == request_id).order_by(V.at, V.review_id))
        return [review_from_row(r) for r in rows.mappings()]


# -- review queue --------------------------------------------------------------------------


def _queue_where(f: Filters, state: QueueState) -> list[ColumnElement[bool]]:
    clauses = where(f if f.verdicts else replace(f, verdicts=REVIEWABLE))
    any_review = exists().where(V.request_id == R.request_id)
    if state == "unreviewed":
        clauses.append(not_(any_review))
        return clauses
    rv = REVIEWS.alias("rv")
    latest = and_(rv.c.request_id == R.request_id, _latest_review_filter(rv))
    if state == "escalated":
        clauses.append(exists().where(latest, rv.c.ruling == "escalate"))
    else:
        clauses.append(exists().where(latest, rv.c.ruling != "escalate"))
    return clauses


def queue_count(engine: Engine, f: Filters, state: QueueState = "unreviewed") -> int:
    with engine.connect() as conn:
        q = select(func.count()).select_from(REQUESTS).where(*_queue_where(f, state))
        return int(conn.execute(q).scalar_one())


def queue_page(
    engine: Engine, f: Filters, state: QueueState = "unreviewed", *, limit: int = 50, offset: int = 0
) -> list[RequestSummary]:
    """Requests waiting for a ruling, oldest first (work the queue in the order things happened)."""
    q = _page(_queue_where(f, state), (R.started_at.asc(), R.request_id.asc()), limit, offset)
    return _summaries(engine, q)


# -- check quality -------------------------------------------------------------------------


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


def _ruled_steps(f: Filters) -> tuple[Any, list[ColumnElement[bool]]]:
    """Acted check steps of requests whose latest ruling is in ``f``'s time range (by ruling time)."""
    rv = REVIEWS.alias("rv")
    clauses = [
        rv.c.request_id == R.request_id,
        _latest_review_filter(rv),
        S.request_id == R.request_id,
        _is_check_step(),
        *where(replace(f, start=None, end=None)),
    ]
    if f.start is not None:
        clauses.append(rv.c.at >= _utc_naive(f.start))
    if f.end is not None:
        clauses.append(rv.c.at < _utc_naive(f.end))
    return rv, clauses


def _ruling_counts(rv: Any) -> tuple[Any, Any, Any]:
    return (
        func.sum(case((rv.c.ruling == "confirm", 1), else_=0)),
        func.sum(case((rv.c.ruling == "false_positive", 1), else_=0)),
        func.sum(case((rv.c.ruling == "escalate", 1), else_=0)),
    )


def check_quality(engine: Engine, f: Filters) -> list[QualityRow]:
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


def quality_trend(engine: Engine, f: Filters, *, bucket_s: int) -> list[QualityPoint]:
    rv, clauses = _ruled_steps(f)
    bucket = (_epoch(engine, rv.c.at) // bucket_s).label("b")
    confirmed, fps, _ = _ruling_counts(rv)
    q = (
        select(bucket, S.name, confirmed, fps)
        .select_from(ACTED.join(REQUESTS, S.request_id == R.request_id).join(rv, rv.c.request_id == R.request_id))
        .where(*clauses)
        .group_by(bucket, S.name)
        .order_by(bucket)
    )
    with engine.connect() as conn:
        return [
            QualityPoint(_bucket_time(b, bucket_s), n, int(c or 0), int(fp or 0)) for b, n, c, fp in conn.execute(q)
        ]


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


def ruled_steps(engine: Engine, check: str, stage: str, f: Filters, *, limit: int = 500) -> list[RuledStep]:
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
            _step_detail(r.steps, r.seq),
            r.tenant,
            r.key_id,
        )
        for r in rows
    ]


def _step_detail(steps_json: str | None, seq: int) -> dict[str, Any]:
    """One step's detail from a record's steps document ({} when it is not there)."""
    try:
        steps = orjson.loads(steps_json or "[]")
    except orjson.JSONDecodeError:
        return {}
    for step in steps:
        if isinstance(step, dict) and step.get("seq") == seq:
            detail = step.get("detail")
            return detail if isinstance(detail, dict) else {}
    return {}


def ruled_inputs(engine: Engine, *, limit: int = 5000) -> list[RuledPrompt]:
    """Requests whose latest ruling is confirm or false positive and whose input stage acted,
    with their stored input text: the ruled part of the regression set (newest rulings first)."""
    rv = REVIEWS.alias("rv")
    q = (
        select(R.request_id, rv.c.ruling, R.input_text, R.tenant, R.key_id)
        .select_from(REQUESTS.join(rv, rv.c.request_id == R.request_id))
        .where(
            _latest_review_filter(rv),
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
    from audit.rows import SPANS

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


# -- replay --------------------------------------------------------------------------------


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


def replay_inputs(engine: Engine, f: Filters, *, limit: int) -> list[ReplayInput]:
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
        q = q.where(R.started_at >= _utc_naive(since))
    with engine.connect() as conn:
        return list(load_page(list(conn.execute(q).mappings())))


# -- policy versions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    id: int
    name: str
    version_hash: str
    yaml_text: str
    created_at: datetime
    created_by: str
    note: str | None
    #: the regression evaluation it was saved with (JSON), and an admin's reason for a weakening change
    evaluation: str | None = None
    weakening_reason: str | None = None


def _policy_version(row: Any) -> PolicyVersion:
    return PolicyVersion(
        row.id,
        row.name,
        row.version_hash,
        row.yaml_text,
        utc(row.created_at) or row.created_at,
        row.created_by,
        row.note,
        row.evaluation,
        row.weakening_reason,
    )


def policy_versions(engine: Engine, name: str, *, limit: int = 100) -> list[PolicyVersion]:
    """Saved versions of the named policy, newest first."""
    pv = POLICY_VERSIONS.c
    q = select(POLICY_VERSIONS).where(pv.name == name).order_by(pv.created_at.desc(), pv.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [_policy_version(r) for r in conn.execute(q)]


def find_policy_version(engine: Engine, name: str, version_hash: str) -> PolicyVersion | None:
    pv = POLICY_VERSIONS.c
    with engine.connect() as conn:
        row = conn.execute(select(POLICY_VERSIONS).where(pv.name == name, pv.version_hash == version_hash)).first()
    return _policy_version(row) if row is not None else None


def record_policy_version(
    engine: Engine,
    *,
    name: str,
    version_hash: str,
    yaml_text: str,
    created_by: str,
    note: str | None,
    evaluation: str | None = None,
    weakening_reason: str | None = None,
) -> tuple[PolicyVersion, bool]:
    """Store a policy text as a version unless that exact text is stored; (version, created).

    Saving a stored text again (a rollback) keeps its row; a new admin reason for letting known
    attacks through, and the evaluation it was given on, are added to that row.
    """
    from sqlalchemy import update

    from audit.db import WRITE_OPTIONS

    pv = POLICY_VERSIONS.c
    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        row = conn.execute(select(POLICY_VERSIONS).where(pv.name == name, pv.version_hash == version_hash)).first()
        if row is not None:
            if weakening_reason:
                conn.execute(
                    update(POLICY_VERSIONS)
                    .where(pv.id == row.id)
                    .values(weakening_reason=weakening_reason, evaluation=evaluation)
                )
                row = conn.execute(select(POLICY_VERSIONS).where(pv.id == row.id)).one()
            return _policy_version(row), False
        conn.execute(
            insert(POLICY_VERSIONS).values(
                name=name,
                version_hash=version_hash,
                yaml_text=yaml_text,
                created_at=datetime.now(UTC),
                created_by=created_by,
                note=note,
                evaluation=evaluation,
                weakening_reason=weakening_reason,
            )
        )
        row = conn.execute(select(POLICY_VERSIONS).where(pv.name == name, pv.version_hash == version_hash)).one()
    return _policy_version(row), True


# -- gateway replicas ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replica:
    replica_id: str
    host: str
    pid: int
    started_at: datetime
    last_seen: datetime
    #: policy file name -> {"name", "version"}
    policies: dict[str, dict[str, str]]

    def runs(self, policy_name: str) -> str | None:
        """The version of ``policy_name`` this replica runs, if it runs that policy."""
        for p in self.policies.values():
            if p.get("name") == policy_name:
                return p.get("version")
        return None


def replicas(engine: Engine, *, seen_since: datetime) -> list[Replica]:
    """Gateway replicas whose heartbeat is newer than ``seen_since`` (``gateway.heartbeat``)."""
    t = Base.metadata.tables["gateway_replicas"]
    q = select(t).where(t.c.last_seen >= _utc_naive(seen_since)).order_by(t.c.host, t.c.pid)
    out = []
    with engine.connect() as conn:
        for r in conn.execute(q):
            try:
                policies = orjson.loads(r.policies)
            except orjson.JSONDecodeError:
                policies = {}
            out.append(
                Replica(
                    r.replica_id,
                    r.host,
                    r.pid,
                    utc(r.started_at) or r.started_at,
                    utc(r.last_seen) or r.last_seen,
                    policies if isinstance(policies, dict) else {},
                )
            )
    return out


# -- dashboard sessions --------------------------------------------------------------------


SESSIONS = Base.metadata.tables["dashboard_sessions"]


@dataclass(frozen=True, slots=True)
class StoredSession:
    id_hash: str
    user_name: str
    created_at: datetime
    last_seen: datetime
    expires_at: datetime
    ended_at: datetime | None


def create_session(engine: Engine, *, id_hash: str, user: str, now: datetime, expires_at: datetime) -> None:
    from audit.db import WRITE_OPTIONS

    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        conn.execute(
            insert(SESSIONS).values(
                id_hash=id_hash, user_name=user, created_at=now, last_seen=now, expires_at=expires_at, ended_at=None
            )
        )


def find_session(engine: Engine, id_hash: str) -> StoredSession | None:
    with engine.connect() as conn:
        row = conn.execute(select(SESSIONS).where(SESSIONS.c.id_hash == id_hash)).first()
    if row is None:
        return None
    return StoredSession(
        row.id_hash,
        row.user_name,
        utc(row.created_at) or row.created_at,
        utc(row.last_seen) or row.last_seen,
        utc(row.expires_at) or row.expires_at,
        utc(row.ended_at),
    )


def touch_session(engine: Engine, id_hash: str, now: datetime) -> None:
    from sqlalchemy import update

    from audit.db import WRITE_OPTIONS

    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        conn.execute(update(SESSIONS).where(SESSIONS.c.id_hash == id_hash).values(last_seen=now))


def end_session(engine: Engine, id_hash: str, now: datetime) -> None:
    from sqlalchemy import update

    from audit.db import WRITE_OPTIONS

    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        conn.execute(
            update(SESSIONS).where(SESSIONS.c.id_hash == id_hash, SESSIONS.c.ended_at.is_(None)).values(ended_at=now)
        )


# -- users ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserRecord:
    name: str
    role: str
    password_hash: str = field(repr=False)
    disabled: bool


def get_user(engine: Engine, name: str) -> UserRecord | None:
    u = USERS.c
    with engine.connect() as conn:
        row = conn.execute(select(u.name, u.role, u.password_hash, u.disabled).where(u.name == name)).first()
    return UserRecord(row.name, row.role, row.password_hash, bool(row.disabled)) if row is not None else None


def insert_user(engine: Engine, *, name: str, role: str, password_hash: str) -> None:
    """Raises ``sqlalchemy.exc.IntegrityError`` when the name is taken."""
    from audit.db import WRITE_OPTIONS

    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        conn.execute(
            insert(USERS).values(
                name=name, role=role, password_hash=password_hash, created_at=datetime.now(UTC), disabled=False
            )
        )


def update_password_hash(engine: Engine, name: str, password_hash: str) -> None:
    """Store a re-hashed password (argon2 parameters raised since it was hashed)."""
    from sqlalchemy import update

    from audit.db import WRITE_OPTIONS

    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        conn.execute(update(USERS).where(USERS.c.name == name).values(password_hash=password_hash))


def stored_ids(engine: Engine, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` have an audit record (a request in flight has none yet)."""
    if not ids:
        return set()
    with engine.connect() as conn:
        return set(conn.execute(select(R.request_id).where(R.request_id.in_(list(ids)))).scalars())
