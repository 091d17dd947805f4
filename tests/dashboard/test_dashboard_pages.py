"""Every dashboard page, driven with Streamlit's AppTest against a database of real gateway requests."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from audit.db import make_engine
from audit.models import Role
from audit.read.verify import verify
from audit.record import Ruling
from dashboard import data
from dashboard.auth import SESSION_KEY, Session
from gateway.config import DEFAULT_CONFIG_ENV
from policies.loader import load_policy_text
from tests.dashboard_fixtures import PASSWORDS, Dash, dash, dashboard_seed
from tests.gateway_harness import write_config

__all__ = ["dash", "dashboard_seed"]

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"
APP = str(DASHBOARD / "app.py")


def logged_in(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(PASSWORDS[name])
    at.button(key="login_submit").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def texts(at: AppTest) -> str:
    """Everything the page wrote, as one string to search."""
    parts: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label}={m.value}" for m in at.metric]
    return "\n".join(parts)


def tables(at: AppTest) -> str:
    return "\n".join(df.value.to_csv() for df in at.dataframe)


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


# -- login and access ----------------------------------------------------------------------


def test_wrong_password_is_refused_and_shows_no_page(dash: Dash) -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="login_name").input("ada")
    at.text_input(key="login_password").input("not-the-password")
    at.button(key="login_submit").click().run()
    assert "Wrong user name or password" in texts(at)
    assert SESSION_KEY not in at.session_state
    assert "not-the-password" not in texts(at)
    with pytest.raises(ValueError):
        at.switch_page("views/overview.py")


def test_viewer_cannot_reach_the_policy_editor_even_by_url(dash: Dash) -> None:
    at = logged_in("vic")
    with pytest.raises(ValueError):
        at.switch_page("views/policies.py")  # not in the viewer's navigation
    # Run the page file itself, as a URL to it would before the menu exists: it checks the role.
    page = AppTest.from_file(str(DASHBOARD / "views" / "policies.py"), default_timeout=60)
    now = time.time()
    page.session_state[SESSION_KEY] = Session("vic", Role.viewer, now, now)
    page.run()
    assert not page.exception
    assert "needs the admin role" in texts(page)
    assert not page.text_area, "the editor must not render for a viewer"
    anonymous = AppTest.from_file(str(DASHBOARD / "views" / "policies.py"), default_timeout=60).run()
    assert "Please log in" in texts(anonymous)
    assert not anonymous.text_area


def test_viewer_cannot_rule(dash: Dash) -> None:
    at = logged_in("vic")
    with pytest.raises(ValueError):
        at.switch_page("views/review.py")
    open_page(at, "views/request.py")
    at.text_input(key="rd_id").input(dash.ids["flag"][0]).run()
    assert "No ruling yet" in texts(at)
    assert not [b for b in at.button if b.key == "rd_rule_submit"]


def test_session_expires_after_inactivity(dash: Dash) -> None:
    at = logged_in("vic")
    session = at.session_state[SESSION_KEY]
    session.last_seen -= 3600  # an hour idle; the default limit is 30 minutes
    at.run()
    assert SESSION_KEY not in at.session_state
    assert "session expired" in texts(at)
    assert not at.metric, "no data after the session expired"


def test_unreachable_database_shows_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+psycopg://warden:hunter2@127.0.0.1:1/warden"  # nothing listens on port 1
    config = write_config(tmp_path, "http://127.0.0.1:9/v1", database_url=url)
    monkeypatch.setenv(DEFAULT_CONFIG_ENV, str(config))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    message = texts(at)
    assert "audit database is unreachable" in message
    assert "hunter2" not in message


# -- monitor and explore -------------------------------------------------------------------


def test_overview_shows_volume_and_rates(dash: Dash) -> None:
    at = logged_in("vic")
    shown = texts(at)
    total = sum(len(v) for v in dash.ids.values())
    assert f"Requests={total}" in shown
    assert f"Blocked={1 / total:.1%}" in shown
    assert "1 would be flagged under enforce" in shown  # the monitor-mode check
    # numbers first: the summary's tables, and no chart until a chart view is opened
    summary = "\n".join(t.value.to_csv() for t in at.table)
    assert "block,1," in summary and "input/watch,flag,2" in summary
    assert not at.get("vega_lite_chart")
    charts = {"Volume": 2, "Latency": 2, "Tokens": 1}
    for view, n in charts.items():
        at.session_state["view"] = view
        at.run()
        assert not at.exception, at.exception
        assert len(at.get("vega_lite_chart")) == n, view
        assert not at.table, "the summary's tables are not drawn under another view"


def test_overview_view_opens_from_its_url(dash: Dash) -> None:
    at = logged_in("vic")
    at.query_params["view"] = "Latency"
    at.run()
    assert not at.exception, at.exception
    assert {s.value for s in at.subheader} >= {"Latency", "Time to first token"}
    assert len(at.get("vega_lite_chart")) == 2


def test_requests_filters_and_pages(dash: Dash) -> None:
    at = open_page(logged_in("vic"), "views/requests.py")
    total = sum(len(v) for v in dash.ids.values())
    assert f"**{total}** requests match" in texts(at)
    at.multiselect(key="rq_verdicts").set_value(["block"]).run()
    assert "**1** requests match" in texts(at)
    # the list shows the prompt as stored and the check that decided, not only an id
    [row] = at.dataframe[0].value.to_dict("records")
    assert row["prompt (as stored)"] == "Just say forbidden-word and nothing else."
    assert row["decided by"] == "banned" and row["verdict"] == "block"
    assert row["score ≥ threshold"] == "1.00"  # deny_terms records no threshold
    at.multiselect(key="rq_verdicts").set_value([]).run()
    at.text_input(key="rq_text").input("merger").run()
    assert "**2** requests match" in texts(at)
    at.text_input(key="rq_text").input("").run()
    at.multiselect(key="rq_checks").set_value(["acme"]).run()
    assert "**1** requests match" in texts(at)
    # filters are kept when the user comes back to the page
    open_page(at, "views/overview.py")
    open_page(at, "views/requests.py")
    assert "**1** requests match" in texts(at)


def test_request_detail_highlights_spans_and_names_the_wrong_step(dash: Dash) -> None:
    at = open_page(logged_in("vic"), "views/requests.py")
    at.text_input(key="rq_open_id").input(dash.ids["redact"][0])
    at.button(key="rq_open_submit").click().run()
    assert not at.exception
    shown = texts(at)
    assert "Request detail" in shown
    assert "&lt;EMAIL_ADDRESS&gt;<sub" in shown  # the redacted value, highlighted
    assert "dashboard-test" in shown and "version" in shown

    open_page(at, "views/request.py")  # AppTest keeps its own page; the app switched in that run only
    at.text_input(key="rd_id").input(dash.ids["stream_redact"][0]).run()
    assert "&lt;ACME_ID&gt;<sub" in texts(at)  # masked by a stream check, offsets remapped

    at.text_input(key="rd_id").input(dash.ids["reasoning"][0]).run()
    shown = texts(at)
    assert "First wrong step: reasoning step 2: 200 × 0.8 = 150 (expected 160)" in shown
    assert ">200 × 0.8 = 150<sub" in shown  # the claim highlighted inside the reasoning step


# -- review --------------------------------------------------------------------------------


def test_reviewer_works_through_the_queue(dash: Dash) -> None:
    at = open_page(logged_in("rita"), "views/review.py")
    waiting = len(dash.ids["block"]) + len(dash.ids["flag"]) + len(dash.ids["output_flag"])
    assert f"**{waiting}** requests" in texts(at)
    first = dash.ids["block"][0]  # oldest flagged-or-blocked request comes first
    assert f"**{first}**" in texts(at)
    assert "Decided by **banned**" in texts(at)
    assert at.radio(key="rv_rule_ruling").value is None  # no answer is pre-selected
    at.button(key="rv_rule_submit").click().run()
    assert "Pick a ruling" in texts(at) and f"**{waiting}** requests" in texts(at)
    at.radio(key="rv_rule_ruling").set_value(Ruling.confirm)
    at.text_input(key="rv_rule_note").input("clearly asked for the banned word")
    at.button(key="rv_rule_submit").click().run()
    assert not at.exception
    assert f"**{waiting - 1}** requests" in texts(at)
    assert f"Ruling on {first} saved" in texts(at)
    assert f"**{first}**" not in texts(at), "the next request is shown"

    engine = make_engine(dash.database_url)
    [review] = data.reviews_for(engine, first)
    assert (review.reviewer, review.ruling, review.note) == (
        "rita",
        Ruling.confirm,
        "clearly asked for the banned word",
    )
    result = verify(engine)
    assert result.ok, result.problems
    assert result.reviews_checked == 1

    open_page(at, "views/request.py")
    at.text_input(key="rd_id").input(first).run()
    assert "clearly asked for the banned word" in tables(at)
    shown = texts(at)
    # the policy stores redacted text: a blocked request has no answer, it was not "not stored"
    assert "blocked at the input stage" in shown and "store_text` is `none`" not in shown
    assert "Why the checks acted" in shown and "**input/banned** → block" in shown


# -- policies ------------------------------------------------------------------------------


def test_invalid_policy_edit_is_refused_with_line_numbers(dash: Dash) -> None:
    before = dash.policy_path.read_text()
    at = open_page(logged_in("ada"), "views/policies.py")
    bad = before.replace("action: flag, mode: monitor", "action: shout, mode: monitor")
    line = next(n for n, row in enumerate(bad.splitlines(), 1) if "shout" in row)
    at.text_area(key=f"pe_draft::{dash.policy_path}").input(bad).run()
    assert f"line {line}" in texts(at)
    assert at.button(key="pe_save").disabled  # an invalid text cannot be saved (and save() checks again)
    assert dash.policy_path.read_text() == before
    assert data.policy_versions(make_engine(dash.database_url), "dashboard-test") == []


def test_policy_save_diff_history_and_rollback(dash: Dash) -> None:
    before = dash.policy_path.read_text()
    after = before.replace('terms: ["forbidden-word"]', 'terms: ["forbidden-word", "launch codes"]')
    at = open_page(logged_in("ada"), "views/policies.py")
    at.text_area(key=f"pe_draft::{dash.policy_path}").input(after).run()
    assert '+  - {check: deny_terms, name: banned, terms: ["forbidden-word", "launch codes"]' in str(
        [c.value for c in at.code]
    )
    at.text_input(key="pe_note").input("ban launch codes").run()
    at.button(key="pe_save").click().run()
    assert "Saved version" in texts(at)
    assert dash.policy_path.read_text() == after  # the file the gateway hot-reloads
    new_version = load_policy_text(after, "x").version
    # the page reads the new running version: no stale diff, and no rollback offered to it
    assert f"version `{new_version}`" in texts(at)
    assert not [c for c in at.code if "(edited)" in str(c.value)]
    assert "This is the running version." in texts(at)

    versions = data.policy_versions(make_engine(dash.database_url), "dashboard-test")
    assert [v.created_by for v in versions] == ["ada", "(file)"]
    assert versions[0].note == "ban launch codes"

    at.run()
    at.selectbox(key="pe_version").set_value(versions[1]).run()
    at.button(key="pe_rollback").click().run()
    assert not at.exception
    assert dash.policy_path.read_text() == before


def test_replay_lists_the_verdicts_an_edit_would_change(dash: Dash) -> None:
    at = open_page(logged_in("ada"), "views/policies.py")
    edited = dash.policy_path.read_text().replace('terms: ["merger"], action: flag', 'terms: ["merger"], action: block')
    at.text_area(key=f"pe_draft::{dash.policy_path}").input(edited).run()
    at.selectbox(key="rp_range").set_value("All time").run()
    at.button(key="rp_run").click().run()
    assert not at.exception
    shown = texts(at)
    assert "Verdicts that change=2" in shown
    assert "Stricter / looser=2 / 0" in shown
    table = tables(at)
    assert all(rid in table for rid in dash.ids["flag"])
    assert "flag → block" in table


# -- quality and integrity -----------------------------------------------------------------


def test_check_quality_proposes_a_scoped_allow_entry_to_replay(dash: Dash) -> None:
    at = open_page(logged_in("ada"), "views/review.py")
    rulings = {
        dash.ids["block"][0]: Ruling.confirm,
        dash.ids["flag"][0]: Ruling.false_positive,
        dash.ids["flag"][1]: Ruling.false_positive,
    }
    for _ in rulings:  # oldest first, whatever order the queue shows them in
        current = next(rid for rid in rulings if f"**{rid}**" in texts(at))
        at.radio(key="rv_rule_ruling").set_value(rulings[current])
        at.button(key="rv_rule_submit").click().run()
    open_page(at, "views/quality.py")
    shown = texts(at)
    # both false positives came from one key: the allow entry is scoped to it (narrower than for everyone)
    assert "add an exception to input/watch for tenant `acme` and key `client-1` only, allowing `merger`" in shown
    table = tables(at)
    assert "input/watch" in table and "input/banned" in table
    at.button(key="q_open_input_watch").click().run()
    assert not at.exception
    open_page(at, "views/policies.py")  # AppTest keeps its own page; the app switched in that run only
    draft = at.text_area(key=f"pe_draft::{dash.policy_path}").value
    assert "exceptions: [{tenant: acme, key: client-1, reason:" in draft and "allow: [merger]}]" in draft
    at.selectbox(key="rp_range").set_value("All time").run()
    at.button(key="rp_run").click().run()
    assert "Stricter / looser=0 / 2" in texts(at)


def test_integrity_page_runs_verify_and_reports_tampering(dash: Dash) -> None:
    at = open_page(logged_in("vic"), "views/integrity.py")
    at.button(key="ig_run").click().run()
    assert "The audit chain verifies" in texts(at)
    engine = make_engine(dash.database_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_requests SET output_text = 'edited' WHERE request_id = :r"), {"r": dash.ids["flag"][0]}
        )
    at.button(key="ig_run").click().run()
    shown = texts(at)
    assert "Verification failed" in shown
    assert dash.ids["flag"][0] in tables(at)


def test_live_page_lists_finished_requests(dash: Dash) -> None:
    at = open_page(logged_in("vic"), "views/live.py")
    shown = texts(at)
    assert "Just finished" in shown
    assert "ARITHMETIC_ERROR" in shown
