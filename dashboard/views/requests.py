"""Requests: the filterable, paginated explorer, with CSV / JSONL export of the filtered set."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import streamlit as st
from sqlalchemy import Engine

from audit.models import Role
from audit.read.export import iter_audit_records
from audit.read.record_filter import RecordFilter
from dashboard import data, export, page_auth, ui

EXPORT_MAX = 100_000
PAGE_SIZES = (25, 50, 100, 200)


def _frame(rows: list[data.RequestSummary]) -> list[dict[str, Any]]:
    return [
        {
            "time": r.started_at,
            "verdict": r.verdict,
            "prompt (as stored)": ui.snippet(r.snippet),
            "decided by": r.decided_by or "",
            "score ≥ threshold": ui.fmt_score(r.score, r.threshold),
            "checks acted": ", ".join(r.acted),
            "ruling": r.ruling or "",
            "tenant": r.tenant,
            "model": r.model_requested,
            "status": f"{r.status} ({r.http_status})",
            "latency ms": r.latency_ms,
            "ttft ms": r.ttft_ms,
            "tokens": (r.prompt_tokens or 0) + (r.completion_tokens or 0),
            "policy": f"{r.policy_name} · {r.policy_version}",
            "request id": r.request_id,
        }
        for r in rows
    ]


def _exporter(eng: Engine, f: RecordFilter, fmt: Callable[..., bytes]) -> Callable[[], bytes]:
    return lambda: fmt(iter_audit_records(eng, f, limit=EXPORT_MAX, newest_first=True))


def render() -> None:
    page_auth.require(Role.viewer)
    st.title("Requests")
    eng = ui.engine()
    f = ui.filter_bar(eng, "rq")
    with ui.db_errors():
        total = ui.count_requests(eng, f)
    head = st.columns([3, 1, 1, 1.2, 1.2])
    size = head[1].selectbox("Rows per page", PAGE_SIZES, index=1, key="rq_size")
    pages = max(1, math.ceil(total / size))
    page = int(head[2].number_input("Page", min_value=1, max_value=pages, value=1, step=1, key="rq_page"))
    head[0].markdown(f"**{total:,}** requests match" + (f" · page {page} of {pages}" if total else ""))
    capped = " (first 100,000)" if total > EXPORT_MAX else ""
    head[3].download_button(
        f"Export CSV{capped}",
        _exporter(eng, f, export.to_csv),
        file_name="warden-requests.csv",
        mime="text/csv",
        disabled=total == 0,
        key="rq_csv",
    )
    head[4].download_button(
        f"Export JSONL{capped}",
        _exporter(eng, f, export.to_jsonl),
        file_name="warden-requests.jsonl",
        mime="application/x-ndjson",
        disabled=total == 0,
        key="rq_jsonl",
    )
    with ui.db_errors():
        rows = ui.request_page(eng, f, limit=size, offset=(page - 1) * size)
    if not rows:
        st.info("No requests match these filters.")
    else:
        event = st.dataframe(
            _frame(rows),
            hide_index=True,
            width="stretch",
            on_select="rerun",
            selection_mode="single-row",
            key="rq_table",
            column_config={
                "time": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss"),
                "latency ms": st.column_config.NumberColumn(format="%.0f"),
                "ttft ms": st.column_config.NumberColumn(format="%.0f"),
            },
        )
        picked = event.selection.rows if event is not None else []
        if picked:
            ui.open_request(rows[picked[0]].request_id)
        st.caption("Select a row to open the request.")
    with st.form("rq_open", border=False):
        cols = st.columns([4, 1])
        rid = cols[0].text_input("Open a request by id", placeholder="req_…", key="rq_open_id")
        if cols[1].form_submit_button("Open", key="rq_open_submit") and rid.strip():
            ui.open_request(rid.strip())


render()
