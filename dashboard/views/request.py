"""Request detail: the step timeline, the prompt and answer with spans highlighted, reasoning
steps, the policy version and trace id, and the reviewers' rulings (with the ruling form)."""

from __future__ import annotations

import html

import streamlit as st

from audit.models import Role
from audit.record import AuditRecord
from dashboard import auth, charts, data, highlight, page_auth, record_view, rulings, ui


def _request_id() -> str | None:
    picked = st.session_state.get(ui.OPEN_REQUEST_KEY) or st.query_params.get("id") or ""
    # A request opened from another page replaces what is in the box; typing replaces it too.
    if "rd_id" not in st.session_state or st.session_state.get("rd_id_source") != picked:
        st.session_state["rd_id"] = picked
    rid = st.text_input("Request id", key="rd_id", placeholder="req_…").strip()
    st.session_state[ui.OPEN_REQUEST_KEY] = st.session_state["rd_id_source"] = rid
    if rid:
        st.query_params["id"] = rid
    return rid or None


def _header(r: AuditRecord) -> None:
    st.markdown(f"### {html.escape(r.request_id)} &nbsp; {ui.verdict_badge(r.verdict.value)}", unsafe_allow_html=True)
    cols = st.columns(6)
    cols[0].metric("Status", f"{r.status.value}", help=f"HTTP {r.http_status}, finish reason {r.finish_reason}")
    cols[1].metric("Latency", ui.fmt_ms(r.latency_ms))
    cols[2].metric("First token", ui.fmt_ms(r.ttft_ms))
    cols[3].metric("Tokens", f"{(r.prompt_tokens or 0):,} + {(r.completion_tokens or 0):,}")
    cols[4].metric("Model", r.model_requested, help=f"served by {r.model_served or '–'}")
    cols[5].metric("Tenant", r.tenant, help=f"key {r.key_id}")
    st.caption(
        f"{ui.fmt_time(r.started_at)} · {r.endpoint}{' (stream)' if r.stream else ''} · "
        f"policy **{r.policy_name}** version `{r.policy_version}` · trace id `{r.trace_id or '–'}` · "
        f"chain `{(r.chain_id or '')[:12]}` seq {r.seq} · hash `{(r.hash or '')[:16]}…`"
    )
    if r.error:
        st.error(f"Error: {r.error}")


def _text_block(title: str, text: str | None, layers: list[highlight.Layer], missing: str) -> None:
    st.markdown(f"**{title}**")
    if text is None:
        st.caption(missing)
        return
    located = highlight.locate(text, layers)
    st.markdown(highlight.to_html(text, located.marks), unsafe_allow_html=True)
    if located.marks:
        entities = sorted({m.entity for m in located.marks})
        legend = " ".join(
            f'<span style="background:{highlight.color(e)};padding:0 6px;border-radius:3px;font-size:0.8em">'
            f"{html.escape(e)}</span>"
            for e in entities
        )
        st.markdown(legend, unsafe_allow_html=True)
    for note in located.notes:
        st.caption(note)


def _timeline(r: AuditRecord) -> None:
    rows = record_view.timeline(r)
    order = [f"{row.seq:02d} {row.stage}/{row.name}" for row in rows]
    bars = [
        {
            "step": f"{row.seq:02d} {row.stage}/{row.name}",
            "start": max(0.0, row.at_ms - row.latency_ms),
            "end": max(row.at_ms, row.at_ms - row.latency_ms + 0.5),
            "verdict": row.verdict,
            "latency ms": row.latency_ms,
        }
        for row in rows
        if row.at_ms is not None
    ]
    if bars:
        charts.show(charts.timeline(order), bars)
    st.dataframe(
        (
            [
                {
                    "#": row.seq,
                    "stage": row.stage,
                    "step": row.name,
                    "verdict": row.verdict,
                    "enforced": row.enforced,
                    "score": row.score,
                    "latency ms": row.latency_ms,
                    "entities": row.entities,
                    "detail": row.detail,
                }
                for row in rows
            ]
        ),
        hide_index=True,
        width="stretch",
        column_config={"latency ms": st.column_config.NumberColumn(format="%.1f")},
    )


def _evidence(r: AuditRecord) -> None:
    """Why each check acted: score against threshold, tier, the message it read, cues and n-grams."""
    found = record_view.evidence(r)
    if not found:
        return
    st.subheader("Why the checks acted")
    for ev in found:
        with st.container(border=True):
            head = f"**{ev.step}** → {ev.verdict}" + ("" if ev.enforced else " (monitor)")
            facts = []
            if ev.score is not None:
                facts.append(f"score {ui.fmt_score(ev.score, ev.threshold)}")
            if ev.tier:
                facts.append(f"tier {ev.tier}")
            if ev.semantic_score is not None:
                facts.append(f"semantic {ev.semantic_score:.2f}")
            if ev.where:
                facts.append(f"read the {ev.where} message")
            if ev.decoded:
                facts.append(f"judged as decoded from {ev.decoded}")
            st.markdown(head + (" · " + " · ".join(facts) if facts else ""))
            if ev.cues:
                st.markdown("Cues: " + ", ".join(f"`{c}`" for c in ev.cues))
            if ev.ngrams:
                st.markdown("Top n-grams: " + ", ".join(f"`{t}` ({w:.2f})" for t, w in ev.ngrams[:8]))
            if ev.quoted_score is not None:
                cues = (" (cues " + ", ".join(f"`{c}`" for c in ev.quoted_cues) + ")") if ev.quoted_cues else ""
                st.markdown(
                    f"A phrase the user quoted scored {ev.quoted_score:.2f}{cues}; it counts together with "
                    "the user's own words, not alone."
                )


def _reasoning(r: AuditRecord) -> None:
    steps = record_view.reasoning_steps(r)
    if not steps:
        return
    st.subheader("Reasoning steps")
    wrong = record_view.first_wrong_step(r)
    if wrong:
        st.warning(f"First wrong step: {wrong}")
    for view in steps:
        label = f"Step {view.number}" + (f" (choice {view.choice})" if view.choice else "") + f" · {view.verdict}"
        with st.expander(label, expanded=view.verdict != "pass"):
            located = highlight.locate(view.text, view.layers)
            st.markdown(highlight.to_html(view.text, located.marks), unsafe_allow_html=True)
            if view.checks:
                st.caption("Fired: " + "; ".join(view.checks))


def _rulings(session: auth.Session, r: AuditRecord) -> None:
    st.subheader("Rulings")
    with ui.db_errors():
        found = data.reviews_for(ui.engine(), r.request_id)
    if found:
        st.dataframe(
            ([{"time": v.at, "reviewer": v.reviewer, "ruling": v.ruling.value, "note": v.note} for v in found]),
            hide_index=True,
            width="stretch",
        )
    else:
        st.caption("No ruling yet.")
    if session.allows(Role.reviewer) and rulings.ruling_form(session, r.request_id, key="rd_rule"):
        st.rerun()


def render() -> None:
    session = page_auth.require(Role.viewer)
    st.title("Request detail")
    rid = _request_id()
    if not rid:
        st.info("Pick a request on the Requests page or the review queue, or paste its id above.")
        return
    with ui.db_errors():
        record = data.load_request(ui.engine(), rid)
    if record is None:
        st.warning(f"No audit record for request {rid!r}. It may still be in flight, or it was pruned.")
        return
    _header(record)
    left, right = st.columns(2)
    with left:
        _text_block(
            "Prompt (as stored)",
            record.input_text,
            record_view.input_layers(record),
            record_view.missing_text_reason(record, "prompt"),
        )
    with right:
        _text_block(
            "Answer (as stored)",
            record.output_text,
            record_view.output_layers(record),
            record_view.missing_text_reason(record, "answer"),
        )
        restored = record_view.restored_placeholders(record)
        if restored:
            st.caption("Restored for the client (stored as placeholders): " + "; ".join(restored))
    _evidence(record)
    st.subheader("Step timeline")
    _timeline(record)
    _reasoning(record)
    _rulings(session, record)


render()
