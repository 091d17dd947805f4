"""Every database query the dashboard makes, as functions over an ``Engine`` returning typed
values; one module per subject, all reached as ``dashboard.data.<name>``:

- ``requests``: a page of a filtered list with what a reviewer needs per row, one request, the
  newest requests (Live), the requests a replay runs over;
- ``choices``: the filter widgets' choices;
- ``traffic``: the Overview's counts, top checks, percentiles and their trends;
- ``queue``: the review queue;
- ``quality``: check quality from rulings, and the ruled data proposals and the regression
  set are built from;
- ``versions``: saved policy versions and the gateway replicas running them;
- ``accounts``: users and sessions;
- ``common``: what those share (columns, the newest ruling, time buckets, a step's detail).

Which requests a query reads is one model shared with ``warden audit export``:
``audit.read.record_filter.RecordFilter``. Queries filter, group, sort and page in the database
(``WHERE`` / ``GROUP BY`` / ``LIMIT`` / ``OFFSET``), so a page costs the same on a thousand
records as on a million; Python only ever holds one page, one chart's buckets, or a capped
export stream. Nothing here imports Streamlit: the pages call these, and tests call them
directly.
"""

from __future__ import annotations

from dashboard.data.accounts import (
    SESSIONS,
    USERS,
    StoredSession,
    UserRecord,
    create_session,
    end_session,
    find_session,
    get_user,
    insert_user,
    touch_session,
    update_password_hash,
)
from dashboard.data.choices import FilterOptions, filter_options
from dashboard.data.quality import (
    QualityPoint,
    QualityRow,
    RuledStep,
    check_quality,
    quality_trend,
    ruled_inputs,
    ruled_steps,
)
from dashboard.data.queue import REVIEWABLE, QueueState, queue_count, queue_page
from dashboard.data.requests import (
    SNIPPET_CHARS,
    ReplayInput,
    RequestSummary,
    count_requests,
    load_request,
    recent_records,
    replay_inputs,
    request_page,
    reviews_for,
    stored_ids,
)
from dashboard.data.traffic import (
    CheckCount,
    LatencyTrends,
    Overview,
    Percentiles,
    SeriesPoint,
    latency_trends,
    overview,
)
from dashboard.data.versions import (
    PolicyVersion,
    Replica,
    find_policy_version,
    policy_versions,
    record_policy_version,
    replicas,
)

__all__ = [
    "REVIEWABLE",
    "SESSIONS",
    "SNIPPET_CHARS",
    "USERS",
    "CheckCount",
    "FilterOptions",
    "LatencyTrends",
    "Overview",
    "Percentiles",
    "PolicyVersion",
    "QualityPoint",
    "QualityRow",
    "QueueState",
    "ReplayInput",
    "Replica",
    "RequestSummary",
    "RuledStep",
    "SeriesPoint",
    "StoredSession",
    "UserRecord",
    "check_quality",
    "count_requests",
    "create_session",
    "end_session",
    "filter_options",
    "find_policy_version",
    "find_session",
    "get_user",
    "insert_user",
    "latency_trends",
    "load_request",
    "overview",
    "policy_versions",
    "quality_trend",
    "queue_count",
    "queue_page",
    "recent_records",
    "record_policy_version",
    "replay_inputs",
    "replicas",
    "request_page",
    "reviews_for",
    "ruled_inputs",
    "ruled_steps",
    "stored_ids",
    "touch_session",
    "update_password_hash",
]
