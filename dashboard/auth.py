"""Dashboard logins: argon2id password hashes, roles, expiring sessions, and the page guard.

* Users live in the audit database's ``users`` table (``warden users add NAME --role R``, password
  from stdin, calls ``add_user``). Only the argon2id hash is stored.
* Roles are ordered: ``viewer`` reads, ``reviewer`` also rules on requests, ``admin`` also edits
  policies. ``require(role)`` runs at the top of every page, on the server, so a page reached by
  URL checks the role itself rather than trusting the navigation menu.
* A session lives in Streamlit's server-side session state (nothing in a cookie or the URL) and
  ends after ``idle_timeout_s`` without activity or ``max_session_s`` after login.
* Wrong passwords are slowed per user name (``LoginThrottle``); an unknown name costs the same
  hash verification as a known one, so timing does not tell which names exist.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from audit.models import Role
from dashboard import data

ROLE_RANK = {Role.viewer: 0, Role.reviewer: 1, Role.admin: 2}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
SESSION_KEY = "warden_session"

_hasher = PasswordHasher()
#: verified against when the user does not exist, so both paths cost one argon2 verification
_DUMMY_HASH = _hasher.hash("warden-no-such-user")


class UserError(ValueError):
    """A user cannot be added as asked (bad name, role or password, or the name is taken)."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def add_user(database_url: str, name: str, role: str, password: str) -> None:
    """Create a dashboard login. Raises ``UserError`` with a message fit for the command line."""
    from audit.db import ensure_schema, make_engine

    if not NAME_PATTERN.match(name):
        raise UserError("user name: 1-64 characters from letters, digits and _ . @ -")
    try:
        parsed = Role(role)
    except ValueError:
        raise UserError(f"role must be one of {', '.join(r.value for r in Role)}") from None
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")
    engine = make_engine(database_url)
    try:
        ensure_schema(engine)
        data.insert_user(engine, name=name, role=parsed.value, password_hash=hash_password(password))
    except IntegrityError:
        raise UserError(f"user {name!r} exists") from None
    finally:
        engine.dispose()


@dataclass(slots=True)
class Session:
    user: str
    role: Role
    started: float
    last_seen: float

    def allows(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    def expired(self, now: float, idle_timeout_s: float, max_session_s: float) -> bool:
        return now - self.last_seen > idle_timeout_s or now - self.started > max_session_s


def authenticate(engine: Engine, name: str, password: str, *, clock: Callable[[], float] = time.time) -> Session | None:
    user = data.get_user(engine, name) if NAME_PATTERN.match(name) else None
    ok = False
    try:
        ok = bool(_hasher.verify(user.password_hash if user else _DUMMY_HASH, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None or user.disabled:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        data.update_password_hash(engine, user.name, hash_password(password))
    now = clock()
    return Session(user.name, Role(user.role), now, now)


@dataclass(slots=True)
class LoginThrottle:
    """After ``max_failures`` wrong passwords for a name within ``window_s``, refuse it for ``lock_s``."""

    max_failures: int = 5
    window_s: float = 300.0
    lock_s: float = 60.0
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def locked(self, name: str, now: float) -> bool:
        with self._lock:
            recent = [t for t in self._failures.get(name.lower(), []) if now - t < self.window_s]
            return len(recent) >= self.max_failures and now - recent[-1] < self.lock_s

    def failed(self, name: str, now: float) -> None:
        with self._lock:
            key = name.lower()
            self._failures[key] = [t for t in self._failures.get(key, []) if now - t < self.window_s] + [now]

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name.lower(), None)


# -- the Streamlit side --------------------------------------------------------------------


def current_session(idle_timeout_s: float, max_session_s: float) -> Session | None:
    """The logged-in session, or None (an expired one is ended here, and says so)."""
    import streamlit as st

    session = st.session_state.get(SESSION_KEY)
    if not isinstance(session, Session):
        return None
    now = time.time()
    if session.expired(now, idle_timeout_s, max_session_s):
        del st.session_state[SESSION_KEY]
        st.session_state["warden_expired"] = True
        return None
    session.last_seen = now
    return session


def require(role: Role) -> Session:
    """The page guard: stop rendering unless a live session with at least ``role`` exists."""
    import streamlit as st

    from dashboard.ui import settings

    cfg = settings()
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
    import streamlit as st

    st.session_state.pop(SESSION_KEY, None)


def login_form(engine: Engine, throttle: LoginThrottle) -> None:
    """The login form; on success puts the session in server-side state and reruns."""
    import streamlit as st

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
    session = authenticate(engine, name.strip(), password)
    if session is None:
        throttle.failed(name, now)
        st.error("Wrong user name or password.")
        return
    throttle.succeeded(name)
    st.session_state[SESSION_KEY] = session
    st.rerun()
