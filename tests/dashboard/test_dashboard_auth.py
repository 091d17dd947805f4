"""Dashboard logins: argon2 hashes in the users table, roles, throttling and session expiry."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from audit.db import make_engine
from audit.models import Role
from dashboard import data
from dashboard.auth import LoginThrottle, Session, UserError, add_user, authenticate


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'users.db'}"


def test_added_user_logs_in_with_the_right_password_only(url: str) -> None:
    add_user(url, "rita", "reviewer", "correct horse battery")
    engine = make_engine(url)
    session = authenticate(engine, "rita", "correct horse battery", clock=lambda: 1000.0)
    assert session == Session("rita", Role.reviewer, 1000.0, 1000.0)
    assert authenticate(engine, "rita", "correct horse battery!") is None
    assert authenticate(engine, "nobody", "correct horse battery") is None
    assert authenticate(engine, "rita'; --", "x") is None


def test_only_an_argon2id_hash_is_stored(url: str) -> None:
    add_user(url, "ada", "admin", "s3cret-password")
    engine = make_engine(url)
    with engine.connect() as conn:
        stored = conn.execute(select(data.USERS.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    assert "s3cret-password" not in stored


@pytest.mark.parametrize(
    ("name", "role", "password", "message"),
    [
        ("ok", "superuser", "long-enough-pw", "role must be one of"),
        ("ok", "viewer", "short", "at least 8"),
        ("bad name", "viewer", "long-enough-pw", "user name"),
        ("", "viewer", "long-enough-pw", "user name"),
    ],
)
def test_bad_users_are_refused(url: str, name: str, role: str, password: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        add_user(url, name, role, password)


def test_a_name_is_taken_once(url: str) -> None:
    add_user(url, "vic", "viewer", "first-password")
    with pytest.raises(UserError, match="exists"):
        add_user(url, "vic", "admin", "second-password")
    assert data.get_user(make_engine(url), "vic") is not None
    assert data.get_user(make_engine(url), "vic").role == "viewer"  # type: ignore[union-attr]


def test_roles_are_ordered() -> None:
    admin = Session("a", Role.admin, 0, 0)
    viewer = Session("v", Role.viewer, 0, 0)
    assert admin.allows(Role.reviewer) and admin.allows(Role.viewer)
    assert viewer.allows(Role.viewer)
    assert not viewer.allows(Role.reviewer) and not viewer.allows(Role.admin)


def test_sessions_expire_when_idle_or_too_old() -> None:
    session = Session("v", Role.viewer, started=0.0, last_seen=100.0)
    assert not session.expired(now=150.0, idle_timeout_s=60, max_session_s=1000)
    assert session.expired(now=161.0, idle_timeout_s=60, max_session_s=1000)
    session.last_seen = 995.0
    assert session.expired(now=1001.0, idle_timeout_s=60, max_session_s=1000)


def test_throttle_locks_a_name_after_repeated_failures() -> None:
    throttle = LoginThrottle(max_failures=3, window_s=60, lock_s=30)
    for t in (0.0, 1.0):
        throttle.failed("Rita", t)
    assert not throttle.locked("rita", 2.0)
    throttle.failed("rita", 2.0)
    assert throttle.locked("RITA", 3.0)
    assert not throttle.locked("vic", 3.0)
    assert not throttle.locked("rita", 40.0)  # the lock ran out
    throttle.failed("rita", 41.0)
    throttle.succeeded("rita")
    assert not throttle.locked("rita", 42.0)


# -- signed session cookies ----------------------------------------------------------------


def test_a_token_is_signed_and_expires() -> None:
    from dashboard.auth import make_token, read_token

    secret = b"k" * 32
    token = make_token(secret, "sid123", 2000)
    assert read_token(secret, token, now=1999.0) == "sid123"
    assert read_token(secret, token, now=2000.0) is None  # expired
    assert read_token(b"other" * 8, token, now=1000.0) is None  # another key
    sid, exp, sig = token.split(".")
    assert read_token(secret, f"{sid}.9999999999.{sig}", now=1000.0) is None  # a longer life, not signed
    assert read_token(secret, f"other.{exp}.{sig}", now=1000.0) is None
    assert read_token(secret, "garbage", now=1000.0) is None


def test_a_session_resumes_from_its_cookie_until_logout_idle_or_disable(url: str, tmp_path: Path) -> None:
    from sqlalchemy import update

    from dashboard.auth import load_secret, read_token, resume_session, start_session

    add_user(url, "rita", "reviewer", "correct horse battery")
    engine = make_engine(url)
    secret = load_secret(tmp_path / "keys" / "session.key")
    assert (tmp_path / "keys" / "session.key").stat().st_mode & 0o777 == 0o600
    assert load_secret(tmp_path / "keys" / "session.key") == secret  # kept, so cookies survive a restart
    session = authenticate(engine, "rita", "correct horse battery")
    assert session is not None
    token = start_session(engine, secret, session, max_session_s=3600)
    resumed = resume_session(engine, secret, token, idle_timeout_s=600)
    assert resumed is not None and (resumed.user, resumed.role) == ("rita", Role.reviewer)
    assert resumed.token_hash == session.token_hash
    # the database holds only a hash of the id the cookie carries
    sid = read_token(secret, token, now=0)
    stored = engine.connect().execute(select(data.SESSIONS.c.id_hash)).scalars().all()
    assert sid not in stored and session.token_hash in stored
    # idle too long
    assert resume_session(engine, secret, token, idle_timeout_s=600, now=resumed.last_seen + 601) is None
    # a disabled user's cookie stops working
    with engine.begin() as conn:
        conn.execute(update(data.USERS).values(disabled=True))
    assert resume_session(engine, secret, token, idle_timeout_s=600) is None
    with engine.begin() as conn:
        conn.execute(update(data.USERS).values(disabled=False))
    # logout ends it on the server: the same cookie is refused everywhere
    assert session.token_hash is not None
    data.end_session(engine, session.token_hash, _now())
    assert resume_session(engine, secret, token, idle_timeout_s=600) is None


def _now() -> datetime:
    return datetime.now(UTC)
