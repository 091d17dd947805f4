"""Live: requests in flight and just finished, their steps appearing as they happen.

Steps in flight come from the gateway's live feed (when the dashboard is told where the gateway
is); finished requests come from the database. Steps where a check acted are highlighted.
"""

from __future__ import annotations

import html
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

import streamlit as st

from audit.models import Role
from audit.record import AuditRecord
from dashboard import data, page_auth, record_view, ui
from dashboard.live import LiveEvent
from dashboard.settings import GATEWAY_URL_ENV, LIVE_KEY_ENV

SHOW = 15


def _step_line(stage: str, name: str, verdict: str, enforced: bool, entities: tuple[str, ...] | list[str]) -> str:
    label = f"<code>{html.escape(stage)}/{html.escape(name)}</code>"
    if verdict == "pass":
        return f"{label} pass"
    extra = (" · " + html.escape(", ".join(entities))) if entities else ""
    monitor = " (monitor)" if not enforced else ""
    return f"{label} {ui.verdict_badge(verdict)}{monitor}{extra}"


def _in_flight(events: list[LiveEvent]) -> None:
    by_request: OrderedDict[str, list[LiveEvent]] = OrderedDict()
    for e in reversed(events):
        by_request.setdefault(e.request_id, []).append(e)
    ids = list(by_request)[:SHOW]
    with ui.db_errors():
        finished = data.stored_ids(ui.engine(), ids)
    for rid in ids:
        steps = sorted(by_request[rid], key=lambda e: e.seq)
        worst = max(
            steps,
            key=lambda e: (
                ("pass", "flag", "redact", "error", "block").index(e.verdict)
                if e.verdict in ("pass", "flag", "redact", "error", "block")
                else 0
            ),
        )
        state = "finished" if rid in finished else "in flight"
        age = time.time() - steps[-1].received
        with st.expander(
            f"{rid} · {steps[0].tenant} · {state} · {len(steps)} steps · {age:.0f} s ago",
            expanded=worst.verdict != "pass" and state == "in flight",
        ):
            lines = []
            for e in steps:
                lines.append(_step_line(e.stage, e.name, e.verdict, e.enforced, e.entities))
                if e.stage == "reasoning" and e.text:
                    lines.append(f"<small>{html.escape(e.text[:400])}</small>")
            st.markdown("<br>".join(lines), unsafe_allow_html=True)


def _finished(records: list[AuditRecord]) -> None:
    for r in records:
        acted = record_view.acted(r.steps)
        title = f"{ui.fmt_time(r.started_at)} · {r.request_id} · {r.verdict.value} · {r.model_requested}"
        with st.expander(title, expanded=False):
            lines = [
                _step_line(
                    s.stage.value, s.name, s.verdict.value, s.enforced, sorted({sp.entity_type for sp in s.spans})
                )
                for s in r.steps
            ]
            st.markdown("<br>".join(lines), unsafe_allow_html=True)
            if acted and st.button("Open detail", key=f"lv_open_{r.request_id}"):
                ui.open_request(r.request_id)


def _panel() -> None:
    feed = ui.live_feed()
    left, right = st.columns(2)
    with left:
        st.subheader("In flight")
        if feed is None:
            st.info(
                f"Set `{GATEWAY_URL_ENV}` and `{LIVE_KEY_ENV}` (a reviewer key) for the dashboard to follow "
                "requests while they run. Finished requests are shown on the right."
            )
        else:
            st.caption(f"Feed: {feed.status}" + (f" · {feed.dropped} steps dropped" if feed.dropped else ""))
            events = feed.snapshot()
            if events:
                _in_flight(events)
            else:
                st.caption("No steps yet.")
    with right:
        st.subheader("Just finished")
        with ui.db_errors():
            records = data.recent_records(ui.engine(), since=datetime.now(UTC) - timedelta(hours=1), limit=SHOW)
        if records:
            _finished(records)
        else:
            st.caption("No request finished in the last hour.")


def render() -> None:
    page_auth.require(Role.viewer)
    st.title("Live")
    follow = st.toggle("Follow (refresh every 2 seconds)", value=True, key="lv_follow")
    st.fragment(_panel, run_every=2 if follow else None)()


render()
