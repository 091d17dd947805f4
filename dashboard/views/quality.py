"""Check quality: from reviewers' rulings, how precise each check is, per policy version and over
time, and for each check the narrowest proposed change (``dashboard.proposals``), already
evaluated on the labelled regression set, to open in the policy editor. A proposal the running
policy already has is not offered again.

A ruling is about a request; it counts for every check that acted on that request. The latest
ruling of a request counts; escalations are shown but are neither confirmed nor false.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from audit.models import Role
from audit.read.record_filter import RecordFilter
from dashboard import charts, data, evaluation, page_auth, policy_files, proposals, ui
from dashboard.auth import Session
from gateway.redteam import Prompt


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
    charts.show(charts.precision(), rows)


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


def _proposals(session: Session, rows: list[data.QualityRow], f: RecordFilter) -> None:
    st.subheader("Proposed changes")
    cfg = ui.settings()
    with_fps = sorted({(r.check, r.stage) for r in rows if r.false_positives})
    if not with_fps:
        st.caption("No false positives ruled in this range, so nothing to propose.")
        return
    prompts = ui.regression_prompts()
    attacks = [p.text for p in prompts if p.label == 1]
    offered = 0
    for check, stage in with_fps:
        found = _policy_for(cfg.policy_paths, stage, check)
        if found is None:
            continue
        path, text, kind = found
        with ui.db_errors():
            ruled = data.ruled_steps(ui.engine(), check, stage, f)
        proposal = proposals.propose(check, kind, stage, _still_firing(path, text, check, stage, ruled), attacks)
        if proposal is not None and proposals.is_applied(text, proposal):
            continue  # already live: nothing left to propose for these rulings
        edited = proposals.apply(text, proposal) if proposal is not None else None
        offered += 1
        with st.container(border=True):
            st.markdown(f"**{stage}/{check}**")
            if proposal is None or edited is None:
                st.caption(
                    "The flagged values are redacted in storage, so no allow entry can be derived; "
                    "add one by hand in the policy editor."
                )
                continue
            st.markdown(f"Proposal: {proposal.summary}. {proposal.reason}")
            _verdict(path, text, edited)
            can_edit = session.allows(Role.admin)
            if st.button(
                "Open in the policy editor",
                key=f"q_open_{stage}_{check}",
                disabled=not can_edit,
                help=None if can_edit else "Editing policies needs the admin role.",
            ):
                st.session_state[ui.PROPOSAL_KEY] = (str(path), edited, proposal.summary)
                st.switch_page(ui.POLICIES_PAGE)
    if not offered:
        st.caption("Every proposal for these rulings is already in the running policy.")


def _still_firing(path: Path, text: str, check: str, stage: str, ruled: list[data.RuledStep]) -> list[data.RuledStep]:
    """The rulings, less the false positives the running policy no longer fires on (already fixed)."""
    running = policy_files.validate(text, str(path)).policy
    fps = [r for r in ruled if r.ruling == "false_positive" and r.text]
    if stage != "input" or running is None or not fps:
        return ruled
    prompts = [
        Prompt(r.text or "", 0, "ruled", r.request_id, "rulings", tenant=r.tenant or "", key=r.key_id or "")
        for r in fps
    ]
    outcomes = evaluation.run(running, prompts)
    fixed = {r.request_id for r, o in zip(fps, outcomes, strict=True) if check not in o.fired}
    return [r for r in ruled if r.request_id not in fixed or r.ruling != "false_positive"]


def _verdict(path: Path, running_text: str, edited_text: str) -> None:
    """The proposal's regression evaluation, in one line."""
    running = policy_files.validate(running_text, str(path)).policy
    edited = policy_files.validate(edited_text, str(path)).policy
    if running is None or edited is None:
        return
    ev = evaluation.evaluate(edited, running, ui.regression_prompts())
    total = ev.by_category()[-1]
    line = (
        f"Evaluated on {len(ev.cases)} labelled prompts: attacks blocked {total.blocked_before} → "
        f"{total.blocked_after} of {total.attacks}; benign passed {total.passed_before} → {total.passed_after} "
        f"of {total.benign}."
    )
    if ev.weakens:
        st.error(f"{line} It lets through {len(ev.weakened)} known attack(s): saving it needs an admin's reason.")
    else:
        st.success(f"{line} No known attack gets through.")


def render() -> None:
    session = page_auth.require(Role.viewer)
    st.title("Check quality")
    st.caption("Precision = confirmed / (confirmed + false positives), from the latest ruling on each request.")
    left, _ = st.columns([1, 3])
    with left:
        start, end = ui.time_range_picker("q")
    f = RecordFilter(start=start, end=end)
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
