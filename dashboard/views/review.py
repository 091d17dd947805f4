"""Review queue: flagged and blocked requests without a ruling, worked through one at a time.

Keyboard flow: the ruling is a radio (arrow keys), the note a text field where Enter saves,
and saving moves on to the next request; Skip / Back move without ruling.
"""

from __future__ import annotations

import html

import streamlit as st

from audit.models import Role
from dashboard import data, highlight, page_auth, record_view, rulings, ui

STATES: dict[data.QueueState, str] = {
    "unreviewed": "Waiting for a ruling",
    "escalated": "Escalated",
    "ruled": "Ruled",
}
POS_KEY = "rv_pos"
SAVED_KEY = "rv_saved"


def _current(record_id: str) -> None:
    with ui.db_errors():
        record = data.load_request(ui.engine(), record_id)
    if record is None:
        st.warning("This request is no longer in the database.")
        return
    st.markdown(
        f"**{html.escape(record.request_id)}** {ui.verdict_badge(record.verdict.value)} · "
        + html.escape(
            f"{ui.fmt_time(record.started_at)} · {record.tenant} · {record.model_requested} · "
            f"policy {record.policy_name} {record.policy_version}"
        ),
        unsafe_allow_html=True,
    )
    acted = record_view.acted(record.steps)
    if acted:
        st.caption(
            "Acted: "
            + "; ".join(
                f"{s.stage.value}/{s.name} → {s.verdict.value}"
                + ("" if s.enforced else " (monitor)")
                + (f" ({', '.join(sorted({sp.entity_type for sp in s.spans}))})" if s.spans else "")
                for s in acted
            )
        )
    left, right = st.columns(2)
    for col, title, text, layers, which in (
        (left, "Prompt", record.input_text, record_view.input_layers(record), "prompt"),
        (right, "Answer", record.output_text, record_view.output_layers(record), "answer"),
    ):
        with col:
            st.markdown(f"**{title}**")
            if text is None:
                st.caption(record_view.missing_text_reason(record, which))
            else:
                located = highlight.locate(text, layers)
                st.markdown(highlight.to_html(text, located.marks), unsafe_allow_html=True)
    wrong = record_view.first_wrong_step(record)
    if wrong:
        st.warning(f"First wrong step: {wrong}")
    with ui.db_errors():
        earlier = data.reviews_for(ui.engine(), record.request_id)
    for v in earlier:
        st.caption(f"{ui.fmt_time(v.at)} · {v.reviewer}: **{v.ruling.value}** {v.note}")


def render() -> None:
    session = page_auth.require(Role.reviewer)
    st.title("Review queue")
    saved = st.session_state.pop(SAVED_KEY, None)
    if saved:
        st.success(f"Ruling on {saved} saved.")
    eng = ui.engine()
    state = (
        st.segmented_control(
            "Show", list(STATES), format_func=lambda s: STATES[s], default="unreviewed", key="rv_state"
        )
        or "unreviewed"
    )
    f = ui.filter_bar(eng, "rv")
    with ui.db_errors():
        total = data.queue_count(eng, f, state)
    pos = min(int(st.session_state.get(POS_KEY, 0)), max(0, total - 1))
    st.markdown(f"**{total:,}** requests" + (f" · showing {pos + 1} of {total:,}" if total else ""))
    if not total:
        st.success("Nothing waiting. The queue is empty for these filters.")
        return
    with ui.db_errors():
        page = data.queue_page(eng, f, state, limit=1, offset=pos)
    if not page:
        st.session_state[POS_KEY] = 0
        st.rerun()
    item = page[0]
    if item.decided_by:
        st.caption(f"Decided by **{item.decided_by}** · score {ui.fmt_score(item.score, item.threshold)}")
    _current(item.request_id)
    if rulings.ruling_form(session, item.request_id, key="rv_rule", submit_label="Save ruling and next"):
        # A new ruling takes a request out of the waiting and escalated lists, so the same
        # position is the next one; in the "ruled" list it stays, so move past it.
        if state == "ruled":
            st.session_state[POS_KEY] = pos + 1
        st.session_state[SAVED_KEY] = item.request_id
        st.rerun()
    nav = st.columns([1, 1, 1, 5])
    if nav[0].button("Back", disabled=pos == 0, key="rv_back"):
        st.session_state[POS_KEY] = pos - 1
        st.rerun()
    if nav[1].button("Skip", disabled=pos + 1 >= total, key="rv_skip"):
        st.session_state[POS_KEY] = pos + 1
        st.rerun()
    if nav[2].button("Open detail", key="rv_open"):
        ui.open_request(item.request_id)
    with st.expander("Next in the queue"):
        with ui.db_errors():
            upcoming = data.queue_page(eng, f, state, limit=20, offset=pos + 1)
        st.dataframe(
            (
                [
                    {
                        "time": r.started_at,
                        "verdict": r.verdict,
                        "prompt (as stored)": ui.snippet(r.snippet),
                        "decided by": r.decided_by or "",
                        "score ≥ threshold": ui.fmt_score(r.score, r.threshold),
                        "checks": ", ".join(r.acted),
                        "tenant": r.tenant,
                        "request id": r.request_id,
                    }
                    for r in upcoming
                ]
            ),
            hide_index=True,
            width="stretch",
        )


render()
