"""Overview: volume, verdict rates, top checks, latency and tokens over a chosen time range.

The page answers with numbers first: the headline figures and two small tables (requests by
verdict, the checks that acted most). Charts sit in the other views (tabs) and are drawn only
when their view is open: each Vega-Lite chart costs the browser a few hundred milliseconds on
a busy machine, and Streamlit's "script finished" message waits behind them (six charts on
every visit: 1.9 s by URL with 100,000 requests at load 7, numbers first: 1.5 s). The open view
is in the URL (``?view=Latency``), so a view can be linked to, and switching views reruns only
the views' fragment, not the page's queries.
"""

from __future__ import annotations

from datetime import datetime

import streamlit as st
from sqlalchemy import Engine

from audit.models import Role
from audit.read.record_filter import RecordFilter
from dashboard import charts, data, page_auth, spikes, ui

_DONE = {"flag": "flagged", "redact": "redacted", "block": "blocked", "error": "failed closed"}
VIEWS = ("Summary", "Volume", "Latency", "Tokens")
#: the open view's widget key, and its name in the page's URL
VIEW_KEY = "view"
#: how long the figures are reused for the same database and range, seconds
CACHE_TTL_S = 30


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=32)
def _overview(_engine: Engine, url: str, filters: RecordFilter, bucket_s: int) -> data.Overview:
    """Cached per database and range, so clicking around does not recount a million rows."""
    return data.overview(_engine, filters, bucket_s=bucket_s)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=32)
def _trends(_engine: Engine, url: str, filters: RecordFilter, bucket_s: int, every: int) -> data.LatencyTrends:
    return data.latency_trends(_engine, filters, bucket_s=bucket_s, sampled_every=every)


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


def _spikes(rates: list[spikes.BucketRate]) -> None:
    for s in spikes.find_spikes(rates)[-3:]:
        st.warning(
            f"Spike at {ui.fmt_time(s.at)}: checks acted on {s.rate:.0%} of {s.total:,} requests "
            f"(usually {s.baseline:.0%})."
        )


def _summary(ov: data.Overview) -> None:
    left, right = st.columns(2)
    with left:
        st.subheader("Requests by verdict")
        st.table(
            [
                {"verdict": v, "requests": f"{ov.by_verdict[v]:,}", "share": f"{ov.rate(v):.1%}"}
                for v in sorted(ov.by_verdict, key=lambda v: -ov.by_verdict[v])
            ],
            hide_index=True,
        )
    with right:
        st.subheader("Top checks")
        if not ov.top_checks:
            st.info("No check acted in this range.")
            return
        st.table(
            [
                {
                    "check": f"{c.stage}/{c.name}" + ("" if c.enforced else " (monitor)"),
                    "verdict": c.verdict,
                    "times acted": f"{c.count:,}",
                }
                for c in ov.top_checks
            ],
            hide_index=True,
        )


def _volume(ov: data.Overview, rates: list[spikes.BucketRate]) -> None:
    st.subheader("Requests by verdict")
    charts.show(charts.volume(), [{"time": p.at, "verdict": p.verdict, "requests": p.requests} for p in ov.series])
    st.subheader("Share of requests acted on")
    rows = [{"time": r.at, "acted on": r.rate, "blocked": r.blocked / r.total if r.total else 0.0} for r in rates]
    charts.show(charts.rates(), rows)


def _percentile_chart(points: list[data.Percentiles], title: str) -> None:
    if not points:
        st.caption(f"No {title.lower()} recorded.")
        return
    charts.show(charts.percentiles(title), [{"time": p.at, "p50": p.p50, "p95": p.p95, "p99": p.p99} for p in points])


def _latency(eng: Engine, f: RecordFilter, ov: data.Overview) -> None:
    with ui.db_errors(), st.spinner("Sorting latencies…"):
        trends = _trends(eng, str(eng.url), f, ov.bucket_s, ov.sampled_every)
    left, right = st.columns(2)
    with left:
        st.subheader("Latency")
        _percentile_chart(trends.latency, "Latency")
    with right:
        st.subheader("Time to first token")
        _percentile_chart(trends.ttft, "Time to first token")


def _tokens(ov: data.Overview) -> None:
    totals: dict[datetime, list[int]] = {}
    for p in ov.series:
        t = totals.setdefault(p.at, [0, 0])
        t[0] += p.prompt_tokens
        t[1] += p.completion_tokens
    st.subheader("Tokens")
    if not any(t[0] or t[1] for t in totals.values()):
        st.caption("No tokens recorded.")
        return
    charts.show(charts.tokens(), [{"time": at, "prompt": t[0], "completion": t[1]} for at, t in sorted(totals.items())])


@st.fragment
def _views(eng: Engine, f: RecordFilter, ov: data.Overview, rates: list[spikes.BucketRate]) -> None:
    """The views as tabs whose content runs only when open (a fragment: switching reruns only this)."""
    tabs = st.tabs(list(VIEWS), key=VIEW_KEY, bind="query-params")
    summary, volume, latency, tokens = tabs
    if summary.open:
        with summary:
            _summary(ov)
    if volume.open:
        with volume:
            _volume(ov, rates)
    if latency.open:
        with latency:
            _latency(eng, f, ov)
    if tokens.open:
        with tokens:
            _tokens(ov)


def render() -> None:
    page_auth.require(Role.viewer)
    st.title("Overview")
    eng = ui.engine()
    left, _ = st.columns([1, 3])
    with left:
        start, end = ui.time_range_picker("ov")
    f = RecordFilter(start=start, end=end)
    with ui.db_errors(), st.spinner("Counting…"):
        ov = _overview(eng, str(eng.url), f, ui.bucket_for(start, end))
    if ov.total == 0:
        st.info("No requests in this time range.")
        return
    _kpis(ov)
    rates = spikes.bucket_rates(ov.series)
    _spikes(rates)
    _views(eng, f, ov, rates)


render()
