"""What every page shares: settings, the database engine, the review writer, error display,
filters and a few formatters. The one module (with the pages) that talks to Streamlit's state.

Resources (settings, engine, writer, login throttle) are cached per process with
``st.cache_resource``, keyed by what they depend on, so editing the config file or pointing a
test at another database takes effect without a restart. A database that cannot be reached
becomes one clear message (``db_errors``), never a traceback.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, NoReturn

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from audit.db import SchemaOutOfDate, ensure_schema, make_engine
from audit.read.record_filter import RecordFilter
from audit.write.writer import AuditWriter
from dashboard import data, evaluation
from dashboard.auth import LoginThrottle
from dashboard.live import LiveFeed
from dashboard.settings import DashboardSettings, load_settings, safe_url
from gateway.config import DEFAULT_CONFIG_ENV
from gateway.redteam import Prompt
from policies.yamlio import YamlModelError

VERDICT_COLORS = {
    "pass": "#9cc5a1",
    "flag": "#f2b134",
    "redact": "#5b8def",
    "block": "#d64545",
    "error": "#8e44ad",
}
VERDICTS = tuple(VERDICT_COLORS)
REQUEST_PAGE = "views/request.py"
POLICIES_PAGE = "views/policies.py"
FILTERS_KEY = "warden_filters"
OPEN_REQUEST_KEY = "warden_request_id"
#: set by the check-quality page for the policy editor: (policy file, proposed text, what it changes)
PROPOSAL_KEY = "warden_policy_proposal"

RANGES: dict[str, timedelta | None] = {
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(days=1),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "All time": None,
}
CUSTOM = "Custom"


def fatal(message: str) -> NoReturn:
    st.error(message)
    st.stop()
    raise AssertionError("unreachable")


# -- resources -----------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=8)
def _settings(path: str, mtime: float) -> DashboardSettings:
    return load_settings(path)


def settings() -> DashboardSettings:
    path = os.environ.get(DEFAULT_CONFIG_ENV)
    if not path:
        fatal("No gateway config: start the dashboard with `warden dashboard --config FILE`.")
    try:
        mtime = Path(path).stat().st_mtime
    except OSError as exc:
        fatal(f"Cannot read the config file {path}: {exc.strerror}.")
    try:
        return _settings(str(Path(path).resolve()), mtime)
    except YamlModelError as exc:
        fatal(f"The config file is invalid:\n\n```\n{exc}\n```")


@st.cache_resource(show_spinner=False, max_entries=8)
def _engine(url: str) -> Engine:
    engine = make_engine(url)
    try:
        ensure_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


@contextmanager
def db_errors() -> Iterator[None]:
    """Turn database failures inside the block into one clear message and stop the page."""
    try:
        yield
    except SchemaOutOfDate as exc:
        fatal(f"The audit database needs a schema upgrade: {exc}")
    except SQLAlchemyError as exc:
        url = safe_url(settings().database_url)
        fatal(
            f"**The audit database is unreachable** ({url}): {_reason(exc)}\n\n"
            "Check that the database is running and that `database_url` in the gateway config "
            "(or `WARDEN_DATABASE_URL`) points at it, then reload this page."
        )


def engine() -> Engine:
    with db_errors():
        return _engine(settings().database_url)


_WRITERS: list[AuditWriter] = []


@st.cache_resource(show_spinner=False, max_entries=8)
def _writer(url: str, spool_dir: str) -> AuditWriter:
    writer = AuditWriter(url, spool_dir=Path(spool_dir))
    writer.start()
    _WRITERS.append(writer)
    return writer


def review_writer() -> AuditWriter:
    """The dashboard's audit writer: rulings are chained audit records like requests."""
    cfg = settings()
    return _writer(cfg.database_url, str(cfg.spool_dir))


def close_resources() -> None:
    """Close writers and engines and forget cached resources (tests; a clean shutdown)."""
    while _WRITERS:
        _WRITERS.pop().close()
    st.cache_resource.clear()


@st.cache_resource(show_spinner=False, max_entries=8)
def _secret(key_file: str) -> bytes:
    from dashboard.auth import load_secret

    return load_secret(Path(key_file))


def session_secret() -> bytes:
    """The key that signs session cookies (``WARDEN_DASHBOARD_SECRET`` or the key file)."""
    return _secret(str(settings().spool_dir / "session.key"))


@st.cache_resource(show_spinner=False)
def login_throttle() -> LoginThrottle:
    return LoginThrottle()


def regression_prompts() -> list[Prompt]:
    """The labelled set every policy change is evaluated on (``dashboard.evaluation``)."""
    cfg = settings()
    with db_errors():
        ruled = data.ruled_inputs(engine())
    try:
        return evaluation.regression_set(cfg.regression_sets, ruled)
    except (OSError, ValueError) as exc:
        fatal(f"A regression set cannot be read: {exc}")


# -- cached queries (per database and filter) ----------------------------------------------

#: how long a list or its filter choices are reused for the same filters, seconds
CACHE_TTL_S = 15


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=64)
def _filter_options(_engine: Engine, url: str, start: datetime | None, end: datetime | None) -> data.FilterOptions:
    return data.filter_options(_engine, start, end)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=64)
def _count_requests(_engine: Engine, url: str, f: RecordFilter) -> int:
    return data.count_requests(_engine, f)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=64)
def _request_page(_engine: Engine, url: str, f: RecordFilter, limit: int, offset: int) -> list[data.RequestSummary]:
    return data.request_page(_engine, f, limit=limit, offset=offset)


def count_requests(eng: Engine, f: RecordFilter) -> int:
    return _count_requests(eng, str(eng.url), f)


def request_page(eng: Engine, f: RecordFilter, *, limit: int, offset: int) -> list[data.RequestSummary]:
    return _request_page(eng, str(eng.url), f, limit, offset)


def clear_list_caches() -> None:
    """After a ruling: the lists show rulings, so they are read again."""
    _count_requests.clear()
    _request_page.clear()


# -- filters -------------------------------------------------------------------------------


@dataclass(slots=True)
class FilterState:
    """The filters as the user set them (a relative range is resolved on every run)."""

    range_label: str = "Last 24 hours"
    custom: tuple[date, date] | None = None
    tenants: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    text: str = ""


def filter_state() -> FilterState:
    state = st.session_state.get(FILTERS_KEY)
    if not isinstance(state, FilterState):
        state = FilterState()
        st.session_state[FILTERS_KEY] = state
    return state


def resolve_range(state: FilterState, now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
    now = now or datetime.now(UTC)
    if state.range_label == CUSTOM and state.custom:
        lo, hi = state.custom
        return datetime.combine(lo, time.min, UTC), datetime.combine(hi, time.min, UTC) + timedelta(days=1)
    delta = RANGES.get(state.range_label, timedelta(days=1))
    # Whole minutes, so the same range gives the same query (and cache entry) for a minute.
    return ((now - delta).replace(second=0, microsecond=0) if delta else None), None


def _key(prefix: str, name: str, value: Any) -> str:
    """A widget key whose first value comes from the saved filters (state survives page changes)."""
    key = f"{prefix}_{name}"
    if key not in st.session_state:
        st.session_state[key] = value
    return key


def time_range_picker(prefix: str) -> tuple[datetime | None, datetime | None]:
    state = filter_state()
    labels = [*RANGES, CUSTOM]
    label = st.selectbox("Time range", labels, key=_key(prefix, "range", state.range_label))
    state.range_label = label
    if label == CUSTOM:
        today = datetime.now(UTC).date()
        picked = st.date_input(
            "From / to (UTC)", key=_key(prefix, "custom", state.custom or (today - timedelta(days=7), today))
        )
        if isinstance(picked, tuple) and len(picked) == 2:
            state.custom = (picked[0], picked[1])
    return resolve_range(state)


def filter_bar(eng: Engine, prefix: str, *, verdicts: bool = True, text: bool = True) -> RecordFilter:
    """The shared filters, above the page's content; returns them as query filters."""
    state = filter_state()
    with st.container(border=True):
        top = st.columns([2, 2, 2, 2])
        with top[0]:
            start, end = time_range_picker(prefix)
        with db_errors():
            options = _filter_options(eng, str(eng.url), start, end)
        versions = {v: f"{name} · {v}" for v, name in options.policy_versions}

        def multi(col: Any, label: str, name: str, opts: list[str], **kw: Any) -> list[str]:
            saved = [v for v in getattr(state, name) if v]
            choices = sorted(set(opts) | set(saved))
            with col:
                picked: list[str] = st.multiselect(label, choices, key=_key(prefix, name, saved), **kw)
            setattr(state, name, picked)
            return picked

        tenants = multi(top[1], "Tenant", "tenants", list(options.tenants))
        models = multi(top[2], "Model", "models", list(options.models))
        verdict_list = multi(top[3], "Verdict", "verdicts", list(VERDICTS)) if verdicts else []
        bottom = st.columns([2, 2, 4])
        checks = multi(bottom[0], "Check that acted", "checks", list(options.checks))
        chosen_versions = multi(
            bottom[1], "Policy version", "versions", list(versions), format_func=lambda v: versions.get(v, v)
        )
        search = ""
        if text:
            with bottom[2]:
                search = st.text_input(
                    "Search stored text", key=_key(prefix, "text", state.text), placeholder="words in prompt or answer"
                )
            state.text = search
    return RecordFilter(
        start=start,
        end=end,
        tenants=tuple(tenants),
        models=tuple(models),
        verdicts=tuple(verdict_list),
        checks=tuple(checks),
        policy_versions=tuple(chosen_versions),
        text=search,
    )


def without_verdicts(f: RecordFilter) -> RecordFilter:
    return replace(f, verdicts=())


# -- navigation and formatting -------------------------------------------------------------


def open_request(request_id: str) -> None:
    st.session_state[OPEN_REQUEST_KEY] = request_id
    st.switch_page(REQUEST_PAGE)


def snippet(text: str | None, limit: int = 120) -> str:
    """A list cell for a stored prompt: one line, cut at ``limit`` characters."""
    if text is None:
        return "(not stored)"
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def fmt_score(score: float | None, threshold: float | None) -> str:
    """``0.93 ≥ 0.50``: the score that decided against the threshold it crossed (when recorded)."""
    if score is None:
        return ""
    return f"{score:.2f} ≥ {threshold:.2f}" if threshold is not None else f"{score:.2f}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:.0f} ms"


def fmt_time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "–"


def verdict_badge(verdict: str) -> str:
    color = VERDICT_COLORS.get(verdict, "#999")
    return (
        f'<span style="background:{color};color:white;padding:1px 8px;border-radius:10px;'
        f'font-size:0.85em">{html.escape(verdict)}</span>'
    )


def bucket_for(start: datetime | None, end: datetime | None, *, points: int = 60) -> int:
    """A round bucket size that gives about ``points`` buckets over the range."""
    span = ((end or datetime.now(UTC)) - (start or datetime.now(UTC) - timedelta(days=30))).total_seconds()
    for size in (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400):
        if span / size <= points:
            return size
    return 30 * 86400


@st.cache_resource(show_spinner=False, max_entries=4)
def _live_feed(url: str) -> LiveFeed:
    feed = LiveFeed(url, lambda: settings().live_key)
    feed.start()
    return feed


def live_feed() -> LiveFeed | None:
    """The gateway's live feed, when ``WARDEN_DASHBOARD_GATEWAY_URL`` is set."""
    cfg = settings()
    return _live_feed(cfg.gateway_url) if cfg.gateway_url else None
