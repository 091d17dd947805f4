"""Auditor's report: a period's volume, decisions, rulings, policy versions and integrity.

The same report as ``warden audit report`` (``audit.read.report``), on screen and as HTML or PDF
downloads. The integrity part runs verify and, when the config names anchors
(``audit.read.anchors``), holds the database to the published chain heads.
"""

from __future__ import annotations

import io
import os
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import streamlit as st

from audit.models import Role
from audit.read.report import AuditReport, build_report
from audit.read.report_render import integrity_lines, render_html, render_pdf
from dashboard import page_auth, ui

RESULT_KEY = "rpt_result"


def _anchor_check(engine: Any) -> tuple[Any, str | None]:
    """The anchor check when the gateway config names anchors and their public key."""
    from audit.read.anchors import check_anchors, load_public_key, read_anchors
    from gateway.config import DEFAULT_CONFIG_ENV, load_config

    path = os.environ.get(DEFAULT_CONFIG_ENV)
    if not path:
        return None, None
    cfg = load_config(path)
    anchors = cfg.audit.anchors
    if anchors is None or not anchors.dir or not anchors.public_key:
        return None, None
    source = str(cfg.resolve(anchors.dir))
    try:
        return check_anchors(engine, read_anchors(source, load_public_key(anchors.public_key))), source
    except (OSError, ValueError) as exc:
        st.warning(f"The anchors at {source} could not be read: {exc}")
        return None, None


def _show(rep: AuditReport) -> None:
    ok, lines = integrity_lines(rep)
    (st.success if ok else st.error)("Integrity: verified" if ok else "Integrity: NOT verified")
    for line in lines:
        st.markdown(f"- {line}")
    cols = st.columns(4)
    cols[0].metric("Requests", f"{rep.total:,}")
    cols[1].metric("Blocked", f"{rep.by_verdict.get('block', 0):,}")
    cols[2].metric("Redacted", f"{rep.by_verdict.get('redact', 0):,}")
    cols[3].metric("Open items", f"{rep.open_items:,}")
    st.subheader("Volume per day")
    if rep.days:
        st.bar_chart(
            {
                "day": [d.day.isoformat() for d in rep.days],
                "blocked": [d.blocked for d in rep.days],
                "redacted": [d.redacted for d in rep.days],
                "flagged": [d.flagged for d in rep.days],
                "other": [d.requests - d.blocked - d.redacted - d.flagged for d in rep.days],
            },
            x="day",
            y=["blocked", "redacted", "flagged", "other"],
        )
    for title, rows in (("Blocks and redactions by check", rep.by_check), ("By tenant", rep.by_tenant)):
        st.subheader(title)
        table = [
            {"name": r.name, "requests": r.requests, "blocked": r.blocked, "redacted": r.redacted, "flagged": r.flagged}
            for r in rows
        ]
        if table:
            st.bar_chart(table[:20], x="name", y=["blocked", "redacted", "flagged"])
            st.dataframe(table, hide_index=True, width="stretch")
        else:
            st.caption("Nothing in this period.")
    st.subheader("Reviewer rulings and open items")
    st.markdown(
        "Rulings on these requests: "
        + (", ".join(f"{k}: {v:,}" for k, v in sorted(rep.rulings.items())) or "none")
        + f". Open items (acted on, not confirmed or dismissed): **{rep.open_items:,}**."
    )
    if rep.open_sample:
        st.dataframe(
            [
                {"request": o.request_id, "started": o.started_at, "tenant": o.tenant, "verdict": o.verdict,
                 "state": "escalated" if o.escalated else "not reviewed"}
                for o in rep.open_sample
            ],
            hide_index=True,
            width="stretch",
        )  # fmt: skip
    st.subheader("Policy versions in force")
    st.dataframe(
        [
            {"policy": p.name, "version": p.version, "requests": p.requests, "first seen": p.first_seen,
             "last seen": p.last_seen, "saved by": p.saved_by or "-", "saved at": p.saved_at}
            for p in rep.policies
        ],
        hide_index=True,
        width="stretch",
    )  # fmt: skip
    for p in rep.policy_changes:
        st.markdown(f"- {p.saved_at:%Y-%m-%d %H:%M} UTC: `{p.name}` `{p.version[:19]}` saved by **{p.saved_by}**")
    if rep.erasures:
        st.subheader("Erasures")
        for x in rep.erasures:
            st.markdown(f"- {x.at:%Y-%m-%d %H:%M} UTC: {x.records:,} records ({x.scope} `{x.selector}`) by {x.actor}")


def render() -> None:
    page_auth.require(Role.viewer)
    st.title("Auditor's report")
    st.caption(
        "A period's volume, blocks and redactions by check and tenant, reviewer rulings and open items, "
        "policy versions in force and who saved them, and the integrity of the audit trail."
    )
    today = datetime.now(UTC).date()
    cols = st.columns(2)
    since: date = cols[0].date_input("From (UTC)", today - timedelta(days=30), key="rpt_since")  # type: ignore[assignment]
    until: date = cols[1].date_input("To (UTC, inclusive)", today, key="rpt_until")  # type: ignore[assignment]
    if st.button("Build report", type="primary", key="rpt_run"):
        start = datetime.combine(since, time(), UTC)
        end = datetime.combine(until + timedelta(days=1), time(), UTC)
        if end <= start:
            st.error("The end date must not be before the start date.")
            return
        engine = ui.engine()
        with ui.db_errors(), st.spinner("Building the report…"):
            check, source = _anchor_check(engine)
            st.session_state[RESULT_KEY] = build_report(engine, start, end, anchors=check, anchors_source=source)
    rep = st.session_state.get(RESULT_KEY)
    if not isinstance(rep, AuditReport):
        return
    pdf = io.BytesIO()
    render_pdf(rep, pdf)
    name = f"warden-audit-{rep.since:%Y%m%d}-{rep.until:%Y%m%d}"
    dl = st.columns(2)
    dl[0].download_button("Download HTML", render_html(rep), f"{name}.html", "text/html", key="rpt_html")
    dl[1].download_button("Download PDF", pdf.getvalue(), f"{name}.pdf", "application/pdf", key="rpt_pdf")
    _show(rep)


render()
