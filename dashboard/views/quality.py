"""Check quality: from reviewers' rulings, how precise each check is, per policy version and over
time, and for each check a proposed change (a threshold or an ``allow`` entry) to replay.

A ruling is about a request; it counts for every check that acted on that request. The latest
ruling of a request counts; escalations are shown but are neither confirmed nor false.
"""

from __future__ import annotations

from pathlib import Path

import altair as alt
import streamlit as st

from audit.models import Role
from dashboard import auth, data, policy_files, proposals, ui
from dashboard.auth import Session


def _table(rows: list[data.QualityRow]) -> None:
    st.dataframe(
        (
            [
                {
                    "check": f"{r.stage}/{r.check}",
                    "policy version": r.policy_version,
                    "confirmed": r.confirmed,
                    "false positives": r.false_positives,
                    "escalated": r.escalated,
                    "precision": r.precision,
                }
                for r in rows
            ]
        ),
        hide_index=True,
        width="stretch",
        column_config={"precision": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)},
    )


def _trend(points: list[data.QualityPoint]) -> None:
    rows = [
        {"time": p.at, "check": p.check, "precision": p.confirmed / (p.confirmed + p.false_positives)}
        for p in points
        if p.confirmed + p.false_positives
    ]
    if not rows:
        return
    chart = (
        alt.Chart(ui.chart_data(rows))
        .mark_line(point=True)
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("precision:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("check:N", legend=alt.Legend(orient="top")),
            tooltip=["time:T", "check:N", alt.Tooltip("precision:Q", format=".0%")],
        )
        .properties(height=220)
    )
    st.altair_chart(chart, width="stretch")


def _policy_for(paths: tuple[Path, ...], stage: str, check: str) -> tuple[Path, str, str] | None:
    """The first policy file with an entry named ``check`` in ``stage``: (file, text, check type)."""
    for path in paths:
        try:
            text = policy_files.read(path)
            kind = proposals.check_type_of(text, stage, check)
        except Exception:  # noqa: S112 - an unreadable or unparsable file simply has no proposal
            continue
        if kind is not None:
            return path, text, kind
    return None


def _proposals(session: Session, rows: list[data.QualityRow], f: data.Filters) -> None:
    st.subheader("Proposed changes")
    cfg = ui.settings()
    with_fps = sorted({(r.check, r.stage) for r in rows if r.false_positives})
    if not with_fps:
        st.caption("No false positives ruled in this range, so nothing to propose.")
        return
    for check, stage in with_fps:
        found = _policy_for(cfg.policy_paths, stage, check)
        with st.container(border=True):
            st.markdown(f"**{stage}/{check}**")
            if found is None:
                st.caption("No policy file served by this gateway has this check any more.")
                continue
            path, text, kind = found
            with ui.db_errors():
                ruled = data.ruled_steps(ui.engine(), check, stage, f)
            proposal = proposals.propose(check, kind, stage, ruled)
            if proposal is None:
                st.caption(
                    "The flagged values are redacted in storage, so no allow entry can be derived; "
                    "add one by hand in the policy editor."
                )
                continue
            st.markdown(f"Proposal: {proposal.summary}. {proposal.reason}")
            edited = proposals.apply(text, proposal)
            can_edit = session.allows(Role.admin) and edited is not None
            if st.button(
                "Open in the policy editor",
                key=f"q_open_{stage}_{check}",
                disabled=not can_edit,
                help=None if can_edit else "Editing policies needs the admin role.",
            ):
                st.session_state[ui.PROPOSAL_KEY] = (str(path), edited, proposal.summary)
                st.switch_page(ui.POLICIES_PAGE)


def render() -> None:
    session = auth.require(Role.viewer)
    st.title("Check quality")
    st.caption("Precision = confirmed / (confirmed + false positives), from the latest ruling on each request.")
    left, _ = st.columns([1, 3])
    with left:
        start, end = ui.time_range_picker("q")
    f = data.Filters(start=start, end=end)
    eng = ui.engine()
    with ui.db_errors():
        rows = data.check_quality(eng, f)
        trend = data.quality_trend(eng, f, bucket_s=max(3600, ui.bucket_for(start, end, points=30)))
    if not rows:
        st.info("No rulings in this time range yet. Rule on requests in the review queue to see precision here.")
        return
    _table(rows)
    st.subheader("Precision over time")
    _trend(trend)
    _proposals(session, rows, f)


render()
