"""Logins as the pages see them: the login form, the page guard, logout and the session cookie.

The Streamlit side of ``dashboard.auth``: it needs the dashboard's engine, secret and settings
(``dashboard.ui``), which ``dashboard.auth`` must not import, since ``dashboard.ui`` imports it.
``require(role)`` runs at the top of every page, on the server, so a page reached by URL checks
the role itself rather than trusting the navigation menu.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import streamlit as st
from sqlalchemy import Engine

from audit.models import Role
from dashboard import auth, data, ui
from dashboard.auth import LoginThrottle, Session
from dashboard.session_cookie import TICKETS, script


def current_session(idle_timeout_s: float, max_session_s: float) -> Session | None:
    """The logged-in session, or None (an expired one is ended here, and says so)."""
    session = st.session_state.get(auth.SESSION_KEY)
    now = time.time()
    if not isinstance(session, Session):
        token = st.context.cookies.get(auth.COOKIE)
        if not token or st.session_state.get("warden_logged_out"):
            return None
        session = auth.resume_session(ui.engine(), ui.session_secret(), token, idle_timeout_s, now=now)
        if session is None:
            return None
        st.session_state[auth.SESSION_KEY] = session
    if session.expired(now, idle_timeout_s, max_session_s) or not auth.still_open(ui.engine(), session, now):
        del st.session_state[auth.SESSION_KEY]
        st.session_state["warden_expired"] = True
        st.session_state[auth.PENDING_COOKIE_KEY] = ("", 0)
        return None
    session.last_seen = now
    return session


def sync_cookie() -> None:
    """Set (or delete) the session cookie in the browser when a login or logout asked for it:
    the page posts a one-time ticket for it, and the server's answer sets the cookie
    ``HttpOnly`` (``dashboard.session_cookie``); the token itself never reaches page script."""
    pending = st.session_state.pop(auth.PENDING_COOKIE_KEY, None)
    if pending is None:
        return
    value, max_age = pending
    st.html(script(TICKETS.issue(value, int(max_age))), unsafe_allow_javascript=True)


def require(role: Role) -> Session:
    """The page guard: stop rendering unless a live session with at least ``role`` exists."""
    cfg = ui.settings()
    session = current_session(cfg.idle_timeout_s, cfg.max_session_s)
    if session is None:
        st.warning("Please log in to use the Warden dashboard: [go to the login page](/).")
        st.stop()
        raise AssertionError("unreachable")  # st.stop raises; keeps type checkers honest
    if not session.allows(role):
        st.error(f"This page needs the {role.value} role; you are logged in as a {session.role.value}.")
        st.stop()
        raise AssertionError("unreachable")
    return session


def logout() -> None:
    """End the session on the server (the cookie is dead everywhere) and delete the cookie."""
    session = st.session_state.pop(auth.SESSION_KEY, None)
    if isinstance(session, Session) and session.token_hash is not None:
        data.end_session(ui.engine(), session.token_hash, datetime.now(UTC))
    st.session_state[auth.PENDING_COOKIE_KEY] = ("", 0)
    st.session_state["warden_logged_out"] = True


def login_form(engine: Engine, throttle: LoginThrottle) -> None:
    """The login form; on success puts the session in server-side state and reruns."""
    if st.session_state.pop("warden_expired", False):
        st.info("Your session expired; please log in again.")
    with st.form("login", clear_on_submit=True):
        st.subheader("Log in")
        name = st.text_input("User name", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in", type="primary", key="login_submit")
    if not submitted:
        return
    now = time.time()
    if throttle.locked(name, now):
        st.error("Too many failed attempts for this user; wait a minute and try again.")
        return
    session = auth.authenticate(engine, name.strip(), password)
    if session is None:
        throttle.failed(name, now)
        st.error("Wrong user name or password.")
        return
    throttle.succeeded(name)
    cfg = ui.settings()
    token = auth.start_session(engine, ui.session_secret(), session, cfg.max_session_s)
    st.session_state[auth.SESSION_KEY] = session
    st.session_state[auth.PENDING_COOKIE_KEY] = (token, int(cfg.max_session_s))
    st.session_state.pop("warden_logged_out", None)
    st.rerun()
