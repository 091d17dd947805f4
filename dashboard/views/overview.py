"""Overview: volume, verdict rates, top checks, latency and tokens over a chosen time range."""

from __future__ import annotations

from datetime import datetime

import altair as alt
import streamlit as st
from sqlalchemy import Engine

from audit.models import Role
from dashboard import auth, data, spikes, ui

_DONE = {"flag": "flagged", "redact": "redacted", "block": "blocked", "error": "failed closed"}


@st.cache_data(ttl=30, show_spinner=False, max_entries=32)
def _overview(_engine: Engine, url: str, filters: data.Filters, bucket_s: int) -> data.Overview:
    """Cached for 30 s per database and range, so clicking around does not recount a million rows."""
    return data.overview(_engine, filters, bucket_s=bucket_s)


def _verdict_scale() -> alt.Scale:
    return alt.Scale(domain=list(ui.VERDICT_COLORS), range=list(ui.VERDICT_COLORS.values()))


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
    rows = [{"time": p.at, "verdict": p.verdict, "requests": p.requests} for p in ov.series]
    chart = (
        alt.Chart(ui.chart_data(rows))
        .mark_bar()
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("sum(requests):Q", title="requests"),
            color=alt.Color("verdict:N", scale=_verdict_scale(), legend=alt.Legend(orient="top")),
            tooltip=["time:T", "verdict:N", "sum(requests):Q"],
        )
        .properties(height=230)
    )
    st.altair_chart(chart, width="stretch")


def _rates(ov: data.Overview) -> None:
    rates = spikes.bucket_rates(ov.series)
    found = spikes.find_spikes(rates)
    for s in found[-3:]:
        st.warning(
            f"Spike at {ui.fmt_time(s.at)}: checks acted on {s.rate:.0%} of {s.total:,} requests "
            f"(usually {s.baseline:.0%})."
        )
    rows = [{"time": r.at, "acted on": r.rate, "blocked": r.blocked / r.total if r.total else 0.0} for r in rates]
    chart = (
        alt.Chart(ui.chart_data(rows))
        .transform_fold(["acted on", "blocked"], as_=["share", "rate"])
        .mark_line(point=True)
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("rate:Q", axis=alt.Axis(format="%"), title="share of requests"),
            color=alt.Color("share:N", scale=alt.Scale(range=["#f2b134", "#d64545"]), legend=alt.Legend(orient="top")),
            tooltip=["time:T", "share:N", alt.Tooltip("rate:Q", format=".1%")],
        )
        .properties(height=200)
    )
    st.altair_chart(chart, width="stretch")


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
    chart = (
        alt.Chart(ui.chart_data(rows))
        .mark_bar()
        .encode(
            y=alt.Y("check:N", sort="-x", title=None),
            x=alt.X("sum(count):Q", title="times acted"),
            color=alt.Color("verdict:N", scale=_verdict_scale(), legend=None),
            tooltip=["check:N", "verdict:N", "sum(count):Q"],
        )
        .properties(height=alt.Step(26))
    )
    st.altair_chart(chart, width="stretch")


def _percentile_chart(points: list[data.Percentiles], title: str) -> None:
    if not points:
        st.caption(f"No {title.lower()} recorded.")
        return
    rows = [{"time": p.at, "p50": p.p50, "p95": p.p95, "p99": p.p99} for p in points]
    chart = (
        alt.Chart(ui.chart_data(rows))
        .transform_fold(["p50", "p95", "p99"], as_=["percentile", "ms"])
        .mark_line()
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("ms:Q", title=f"{title} (ms)"),
            color=alt.Color(
                "percentile:N",
                scale=alt.Scale(range=["#9cc5a1", "#5b8def", "#d64545"]),
                legend=alt.Legend(orient="top"),
            ),
            tooltip=["time:T", "percentile:N", alt.Tooltip("ms:Q", format=".0f")],
        )
        .properties(height=200)
    )
    st.altair_chart(chart, width="stretch")


def _tokens(ov: data.Overview) -> None:
    totals: dict[datetime, list[int]] = {}
    for p in ov.series:
        t = totals.setdefault(p.at, [0, 0])
        t[0] += p.prompt_tokens
        t[1] += p.completion_tokens
    if not totals:
        return
    rows = [{"time": at, "prompt": t[0], "completion": t[1]} for at, t in sorted(totals.items())]
    chart = (
        alt.Chart(ui.chart_data(rows))
        .transform_fold(["prompt", "completion"], as_=["kind", "tokens"])
        .mark_area(opacity=0.7)
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("tokens:Q", stack=True),
            color=alt.Color("kind:N", scale=alt.Scale(range=["#5b8def", "#9cc5a1"]), legend=alt.Legend(orient="top")),
        )
        .properties(height=200)
    )
    st.altair_chart(chart, width="stretch")


def render() -> None:
    auth.require(Role.viewer)
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
