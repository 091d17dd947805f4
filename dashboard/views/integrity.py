"""Integrity: run the audit hash-chain verification and show what it found."""

from __future__ import annotations

import streamlit as st

from audit.keys import ENV_KEY
from audit.models import Role
from audit.read.verify import ProblemKind, VerifyResult, verify
from dashboard import page_auth, ui

RESULT_KEY = "ig_result"


def _show(result: VerifyResult) -> None:
    cols = st.columns(3)
    cols[0].metric("Request records checked", f"{result.records_checked:,}")
    cols[1].metric("Rulings checked", f"{result.reviews_checked:,}")
    cols[2].metric("Chains", f"{result.chains_checked:,}")
    if result.ok:
        st.success("The audit chain verifies: no record was edited, deleted, inserted or reordered.")
        return
    st.error(
        f"Verification failed: {len(result.problems)} problem(s)"
        + (" (more not shown)" if result.truncated else "")
        + f". First: {result.reason}"
    )
    if any(p.kind in (ProblemKind.key_missing, ProblemKind.key_mismatch) for p in result.problems):
        st.info(
            f"Chains written with an audit key can only be checked with the same `{ENV_KEY}` set for the dashboard."
        )
    st.dataframe(
        (
            [
                {
                    "problem": p.kind.value,
                    "chain": p.chain_id,
                    "seq": p.seq,
                    "record": p.record_id or "",
                    "message": p.message,
                }
                for p in result.problems
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    bad = [p.record_id for p in result.problems if p.record_id and p.record_id.startswith("req_")]
    if bad and st.button("Open the first affected request", key="ig_open"):
        ui.open_request(bad[0])


def render() -> None:
    page_auth.require(Role.viewer)
    st.title("Audit integrity")
    st.caption(
        "Recomputes every record's hash from its stored content and steps, walks each chain in order, and "
        "checks each chain's head. Rulings are chained the same way."
    )
    if st.button("Run verification", type="primary", key="ig_run"):
        with ui.db_errors(), st.spinner("Verifying the audit chains…"):
            st.session_state[RESULT_KEY] = verify(ui.engine())
    result = st.session_state.get(RESULT_KEY)
    if isinstance(result, VerifyResult):
        _show(result)


render()
