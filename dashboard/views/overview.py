"""Overview: volume, verdict rates, top checks, latency and tokens over a chosen time range."""

from __future__ import annotations

from datetime import datetime

import streamlit as st
from sqlalchemy import Engine

from audit.models import Role
from dashboard import charts, data, page_auth, spikes, ui

_DONE = {"flag": "flagged", "redact": "redacted", "block": "blocked", "error": "failed closed"}


@st.cache_data(ttl=30, show_spinner=False, max_entries=32)
def _overview(_engine: Engine, url: str, filters: data.Filters, bucket_s: int) -> data.Overview:
    """Cached for 30 s per database and range, so clicking around does not recount a million rows."""
    return data.overview(_engine, filters, bucket_s=bucket_s)


def _kpis(ov: data.Overview) -> None:
    cols = st.columns(6)
    cols[0].metric("Requests", f"{ov.total:,}")
    cols[1].metric("Blocked", f"{ov.rate('block'):.1%}", help=f"{ov.by_verdict.get('block', 0):,} requests")
    cols[2].metric("Redacted", f"{ov.rate('redact'):.1%}", help=f"{ov.by_verdict.get('redact', 0):,} requests")
    cols[3].metric("Flagged", f"{ov.rate('flag'):.1%}", help=f"{ov.by_verdict.get('flag', 0):,} requests")
    cols[4].metric(
        "Latency p95",
        ui.fmt_ms(ov.latency.p95),
        help=f"p50 {ui.fmt_ms(ov.latency.p50)}, p99 {ui.fmt_ms(ov.latency.p99)}",
    )
    cols[5].metric(
        "Time to first token p95",
        ui.fmt_ms(ov.ttft.p95),
        help=f"p50 {ui.fmt_ms(ov.ttft.p50)}, p99 {ui.fmt_ms(ov.ttft.p99)}",
    )
    would = ", ".join(f"{n:,} would be {_DONE.get(v, v)}" for v, n in sorted(ov.monitor_would.items()))
    errors = ov.by_verdict.get("error", 0)
    st.caption(
        f"Tokens: {ov.prompt_tokens:,} prompt, {ov.completion_tokens:,} completion. "
        f"Check errors (fail-closed): {errors:,}. "
        + (f"Monitor-mode checks: {would} under enforce." if would else "No monitor-mode check would have acted.")
        + (f" Percentiles are estimated from every {ov.sampled_every}th request." if ov.sampled_every > 1 else "")
    )


def _volume(ov: data.Overview) -> None:
    charts.show(charts.volume(), [{"time": p.at, "verdict": p.verdict, "requests": p.requests} for p in ov.series])


def _rates(ov: data.Overview) -> None:
    rates = spikes.bucket_rates(ov.series)
    found = spikes.find_spikes(rates)
    for s in found[-3:]:
        st.warning(
            f"Spike at {ui.fmt_time(s.at)}: checks acted on {s.rate:.0%} of {s.total:,} requests "
            f"(usually {s.baseline:.0%})."
        )
    rows = [{"time": r.at, "acted on": r.rate, "blocked": r.blocked / r.total if r.total else 0.0} for r in rates]
    charts.show(charts.rates(), rows)


def _top_checks(ov: data.Overview) -> None:
    if not ov.top_checks:
        st.info("No check acted in this range.")
        return
    rows = [
        {
            "check": f"{c.stage}/{c.name}" + ("" if c.enforced else " (monitor)"),
            "verdict": c.verdict,
            "count": c.count,
        }
        for c in ov.top_checks
    ]
    charts.show(charts.top_checks(), rows)


def _percentile_chart(points: list[data.Percentiles], title: str) -> None:
    if not points:
        st.caption(f"No {title.lower()} recorded.")
        return
    charts.show(charts.percentiles(title), [{"time": p.at, "p50": p.p50, "p95": p.p95, "p99": p.p99} for p in points])


def _tokens(ov: data.Overview) -> None:
    totals: dict[datetime, list[int]] = {}
    for p in ov.series:
        t = totals.setdefault(p.at, [0, 0])
        t[0] += p.prompt_tokens
        t[1] += p.completion_tokens
    if not totals:
        return
    charts.show(charts.tokens(), [{"time": at, "prompt": t[0], "completion": t[1]} for at, t in sorted(totals.items())])


def render() -> None:
    page_auth.require(Role.viewer)
    st.title("Overview")
    eng = ui.engine()
    left, _ = st.columns([1, 3])
    with left:
        start, end = ui.time_range_picker("ov")
    bucket = ui.bucket_for(start, end)
    with ui.db_errors(), st.spinner("Counting…"):
        ov = _overview(eng, ui.settings().database_url, data.Filters(start=start, end=end), bucket)
    if ov.total == 0:
        st.info("No requests in this time range.")
        return
    _kpis(ov)
    st.subheader("Requests by verdict")
    _volume(ov)
    st.subheader("Share of requests acted on")
    _rates(ov)
    left, right = st.columns(2)
    with left:
        st.subheader("Top checks")
        _top_checks(ov)
    with right:
        st.subheader("Tokens")
        _tokens(ov)
    left, right = st.columns(2)
    with left:
        st.subheader("Latency")
        _percentile_chart(ov.latency_series, "Latency")
    with right:
        st.subheader("Time to first token")
        _percentile_chart(ov.ttft_series, "Time to first token")


render()
