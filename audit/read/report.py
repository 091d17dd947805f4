"""The auditor's report for a period: what happened, what was decided, and whether to trust it.

``build_report(engine, since, until)`` gathers, for requests that started in ``[since, until)``:
volume (per day, per tenant), blocks and redactions by check and by tenant, reviewer rulings
on them and the open items (flagged or blocked requests no reviewer has confirmed or dismissed), the
policy versions in force with who saved them, erasures, and the integrity result (verify over
the whole database, plus the anchor check when anchors are given). ``audit.read.report_render``
turns it into HTML or PDF; the dashboard's Report page shows the same object.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson
from sqlalchemy import Date, Engine, and_, cast, exists, func, select

from audit.chain import ChainKey
from audit.models import Base
from audit.read.anchors import AnchorCheck
from audit.read.verify import VerifyResult, verify
from audit.rows import ACTED, ERASURES, REQUESTS, REVIEWS, utc

POLICY_VERSIONS = Base.metadata.tables["policy_versions"]
#: open items listed by name (the count is always complete)
OPEN_SAMPLE = 25


@dataclass(frozen=True, slots=True)
class DayRow:
    day: date
    requests: int
    blocked: int
    redacted: int
    flagged: int


@dataclass(frozen=True, slots=True)
class ActionRow:
    """Requests in which something (a check, or a tenant's requests) flagged, redacted, blocked."""

    name: str
    requests: int
    flagged: int
    redacted: int
    blocked: int


@dataclass(frozen=True, slots=True)
class PolicyRow:
    name: str
    version: str
    requests: int
    first_seen: datetime
    last_seen: datetime
    saved_by: str | None
    saved_at: datetime | None
    note: str | None


@dataclass(frozen=True, slots=True)
class OpenItem:
    request_id: str
    started_at: datetime
    tenant: str
    verdict: str
    escalated: bool


@dataclass(frozen=True, slots=True)
class ErasureRow:
    erasure_id: str
    at: datetime
    actor: str
    scope: str
    selector: str
    records: int


@dataclass(frozen=True, slots=True)
class Integrity:
    verify: VerifyResult
    anchors: AnchorCheck | None
    anchors_source: str | None

    @property
    def ok(self) -> bool:
        return self.verify.ok and (self.anchors is None or self.anchors.ok)


@dataclass(slots=True)
class AuditReport:
    since: datetime
    until: datetime
    generated_at: datetime
    total: int = 0
    by_verdict: dict[str, int] = field(default_factory=dict)
    days: list[DayRow] = field(default_factory=list)
    by_check: list[ActionRow] = field(default_factory=list)
    by_tenant: list[ActionRow] = field(default_factory=list)
    rulings: dict[str, int] = field(default_factory=dict)
    open_items: int = 0
    open_sample: list[OpenItem] = field(default_factory=list)
    policies: list[PolicyRow] = field(default_factory=list)
    policy_changes: list[PolicyRow] = field(default_factory=list)
    erasures: list[ErasureRow] = field(default_factory=list)
    integrity: Integrity | None = None


def _period(since: datetime, until: datetime) -> Any:
    return and_(REQUESTS.c.started_at >= since, REQUESTS.c.started_at < until)


def build_report(
    engine: Engine,
    since: datetime,
    until: datetime,
    *,
    key: ChainKey | None = None,
    anchors: AnchorCheck | None = None,
    anchors_source: str | None = None,
    run_verify: bool = True,
) -> AuditReport:
    since_u, until_u = utc(since), utc(until)
    assert since_u is not None and until_u is not None
    if until_u <= since_u:
        raise ValueError("--until must be after --since")
    rep = AuditReport(since_u, until_u, datetime.now(UTC))
    r = REQUESTS.c
    in_period = _period(since_u, until_u)
    with engine.connect() as conn:
        for verdict, n in conn.execute(select(r.verdict, func.count()).where(in_period).group_by(r.verdict)):
            rep.by_verdict[verdict] = int(n)
        rep.total = sum(rep.by_verdict.values())
        rep.days = _days(conn, in_period, engine.dialect.name)
        rep.by_tenant = _actions(
            conn.execute(select(r.tenant, r.verdict, func.count()).where(in_period).group_by(r.tenant, r.verdict))
        )
        a = ACTED.c
        acted = (
            select(a.name, a.verdict, func.count(func.distinct(a.request_id)))
            .join(REQUESTS, r.request_id == a.request_id)
            .where(in_period)
            .group_by(a.name, a.verdict)
        )
        rep.by_check = [row for row in _actions(conn.execute(acted)) if row.flagged + row.redacted + row.blocked]
        v = REVIEWS.c
        # rulings on the period's requests, whenever they were made
        q = (
            select(v.ruling, func.count())
            .join(REQUESTS, r.request_id == v.request_id)
            .where(in_period)
            .group_by(v.ruling)
        )
        rep.rulings = {ruling: int(n) for ruling, n in conn.execute(q)}
        _open_items(conn, rep, in_period)
        rep.policies, rep.policy_changes = _policies(conn, in_period, since_u, until_u)
        e = ERASURES.c
        for row in conn.execute(select(ERASURES).where(e.at >= since_u, e.at < until_u).order_by(e.at)):
            at = utc(row.at)
            assert at is not None
            n = len(orjson.loads(row.request_ids))
            rep.erasures.append(ErasureRow(row.erasure_id, at, row.actor, row.scope, row.selector, n))
    if run_verify:
        rep.integrity = Integrity(verify(engine, key=key), anchors, anchors_source)
    return rep


def _days(conn: Any, in_period: Any, dialect: str) -> list[DayRow]:
    r = REQUESTS.c
    day = func.date(r.started_at) if dialect == "sqlite" else cast(r.started_at, Date)
    counts: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for d, verdict, n in conn.execute(select(day, r.verdict, func.count()).where(in_period).group_by(day, r.verdict)):
        key = d if isinstance(d, date) else date.fromisoformat(str(d))
        counts[key][verdict] += int(n)
    return [DayRow(d, sum(c.values()), c["block"], c["redact"], c["flag"]) for d, c in sorted(counts.items())]


def _actions(rows: Any) -> list[ActionRow]:
    acc: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for name, verdict, n in rows:
        acc[name][verdict] += int(n)
    out = [ActionRow(name, sum(c.values()), c["flag"], c["redact"], c["block"]) for name, c in acc.items()]
    return sorted(out, key=lambda a: (-(a.blocked + a.redacted + a.flagged), -a.requests, a.name))


def _open_items(conn: Any, rep: AuditReport, in_period: Any) -> None:
    r, v = REQUESTS.c, REVIEWS.c
    settled = exists().where(v.request_id == r.request_id, v.ruling.in_(["confirm", "false_positive"]))
    escalated = exists().where(v.request_id == r.request_id, v.ruling == "escalate")
    open_q = and_(in_period, r.verdict.in_(["flag", "block", "redact"]), ~settled)
    rep.open_items = int(conn.execute(select(func.count()).select_from(REQUESTS).where(open_q)).scalar_one())
    q = (
        select(r.request_id, r.started_at, r.tenant, r.verdict, escalated.label("esc"))
        .where(open_q)
        .order_by(r.started_at.desc())
        .limit(OPEN_SAMPLE)
    )
    for row in conn.execute(q):
        started = utc(row.started_at)
        assert started is not None
        rep.open_sample.append(OpenItem(row.request_id, started, row.tenant, row.verdict, bool(row.esc)))


def _policies(conn: Any, in_period: Any, since: datetime, until: datetime) -> tuple[list[PolicyRow], list[PolicyRow]]:
    r, p = REQUESTS.c, POLICY_VERSIONS.c
    q = (
        select(r.policy_name, r.policy_version, func.count(), func.min(r.started_at), func.max(r.started_at))
        .where(in_period)
        .group_by(r.policy_name, r.policy_version)
    )
    used = list(conn.execute(q))
    saved = {
        (row.name, row.version_hash): row
        for row in conn.execute(select(POLICY_VERSIONS).where(p.version_hash.in_([u[1] for u in used] or [""])))
    }
    in_force = []
    for name, version, n, first, last in used:
        s = saved.get((name, version))
        in_force.append(
            PolicyRow(
                name, version, int(n), utc(first) or since, utc(last) or until,
                s.created_by if s is not None else None, utc(s.created_at) if s is not None else None,
                s.note if s is not None else None,
            )
        )  # fmt: skip
    in_force.sort(key=lambda x: (x.name, x.first_seen))
    changes = [
        PolicyRow(row.name, row.version_hash, 0, since, until, row.created_by, utc(row.created_at), row.note)
        for row in conn.execute(
            select(POLICY_VERSIONS).where(p.created_at >= since, p.created_at < until).order_by(p.created_at)
        )
    ]
    return in_force, changes
