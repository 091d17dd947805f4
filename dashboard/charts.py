"""The dashboard's charts as Vega-Lite specs, built with Altair once per process.

Altair validates a chart against the Vega-Lite JSON schema each time it is built and converted,
which cost the Overview ~0.3-0.7 s a run on the shared 2-core machine, more than its queries
once they were indexed. A chart's *shape* never changes, only its rows: so each shape is built
and converted here once (``functools.cache``), and ``show`` hands Streamlit the spec with the
rows put in, as plain JSON. Page files are re-run on every page load; this module is imported
once, so its cache lives as long as the server.
"""

from __future__ import annotations

import copy
import functools
from datetime import datetime
from typing import Any

import altair as alt
import streamlit as st

from dashboard.ui import VERDICT_COLORS

Spec = dict[str, Any]


def show(spec: Spec, rows: list[dict[str, Any]]) -> None:
    """Draw ``spec`` with ``rows`` (timestamps as ISO strings, which Vega-Lite parses)."""
    values = [{k: v.isoformat() if isinstance(v, datetime) else v for k, v in r.items()} for r in rows]
    st.vega_lite_chart(spec={**spec, "data": {"values": values}}, width="stretch")


def _spec(chart: alt.Chart) -> Spec:
    spec: Spec = chart.to_dict()
    spec.pop("data", None)
    return spec


def _verdict_scale() -> alt.Scale:
    return alt.Scale(domain=list(VERDICT_COLORS), range=list(VERDICT_COLORS.values()))


def _empty() -> alt.Chart:
    return alt.Chart(alt.Data(values=[]))  # type: ignore[no-untyped-call]


@functools.cache
def volume() -> Spec:
    """Requests per time bucket, stacked by verdict (rows: time, verdict, requests)."""
    return _spec(
        _empty()
        .mark_bar()
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("sum(requests):Q", title="requests"),
            color=alt.Color("verdict:N", scale=_verdict_scale(), legend=alt.Legend(orient="top")),
            tooltip=["time:T", "verdict:N", "sum(requests):Q"],
        )
        .properties(height=230)
    )


@functools.cache
def rates() -> Spec:
    """Share of requests acted on and blocked per bucket (rows: time, acted on, blocked)."""
    return _spec(
        _empty()
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


@functools.cache
def percentiles(title: str) -> Spec:
    """p50 / p95 / p99 of ``title`` (ms) per bucket (rows: time, p50, p95, p99)."""
    return _spec(
        _empty()
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


@functools.cache
def tokens() -> Spec:
    """Prompt and completion tokens per bucket, stacked (rows: time, prompt, completion)."""
    return _spec(
        _empty()
        .transform_fold(["prompt", "completion"], as_=["kind", "tokens"])
        .mark_area(opacity=0.7)
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("tokens:Q", stack=True),
            color=alt.Color("kind:N", scale=alt.Scale(range=["#5b8def", "#9cc5a1"]), legend=alt.Legend(orient="top")),
        )
        .properties(height=200)
    )


@functools.cache
def precision() -> Spec:
    """Each check's precision from rulings per bucket (rows: time, check, precision)."""
    return _spec(
        _empty()
        .mark_line(point=True)
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("precision:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("check:N", legend=alt.Legend(orient="top")),
            tooltip=["time:T", "check:N", alt.Tooltip("precision:Q", format=".0%")],
        )
        .properties(height=220)
    )


@functools.cache
def _timeline() -> Spec:
    return _spec(
        _empty()
        .mark_bar(cornerRadius=2)
        .encode(
            y=alt.Y("step:N", title=None),
            x=alt.X("start:Q", title="ms since the request started"),
            x2="end:Q",
            color=alt.Color("verdict:N", scale=_verdict_scale(), legend=alt.Legend(orient="top")),
            tooltip=["step:N", "verdict:N", alt.Tooltip("latency ms:Q", format=".1f")],
        )
        .properties(height=alt.Step(20))
    )


def warm() -> None:
    """Build every chart's spec now (the server calls this at start-up, so the first page a user
    opens does not pay for importing Altair and validating its charts)."""
    for build in (volume, rates, tokens, precision, _timeline):
        build()
    for title in ("Latency", "Time to first token"):
        percentiles(title)


def timeline(order: list[str]) -> Spec:
    """A request's steps as bars over time, in ``order`` (rows: step, start, end, verdict, latency ms)."""
    spec = copy.deepcopy(_timeline())
    spec["encoding"]["y"]["sort"] = order
    return spec
