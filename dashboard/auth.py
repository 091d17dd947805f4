"""Dashboard logins: argon2id password hashes, roles, expiring sessions, and the page guard.

* Users live in the audit database's ``users`` table (``warden users add NAME --role R``, password
  from stdin, calls ``add_user``). Only the argon2id hash is stored.
* Roles are ordered: ``viewer`` reads, ``reviewer`` also rules on requests, ``admin`` also edits
  policies. ``page_auth.require(role)`` runs at the top of every page, on the server, so a page reached by
  URL checks the role itself rather than trusting the navigation menu.
* A login survives a browser reload: it is a server-side row (``dashboard_sessions``) and a
  cookie holding a random session id, its expiry and an HMAC-SHA256 signature over both
  (``make_token`` / ``read_token``; key from ``WARDEN_DASHBOARD_SECRET`` or a 0600 key file).
  The database keeps only a hash of the id. A session ends after ``idle_timeout_s`` without
  activity or ``max_session_s`` after login; logging out ends the row, so the cookie is dead
  everywhere at once, even if it was copied. The user's role and ``disabled`` flag are read
  from ``users`` when a session resumes, so a change there takes effect on the next reload.
  A script run cannot set a cookie (it talks to the browser over a WebSocket), so the page
  posts a one-time ticket to the dashboard server's ``/_warden/session`` route, whose answer
  sets the cookie ``HttpOnly; SameSite=Strict`` (and ``Secure`` over HTTPS): page script never
  sees the token (``dashboard.session_cookie``).
* Wrong passwords are slowed per user name (``LoginThrottle``); an unknown name costs the same
  hash verification as a known one, so timing does not tell which names exist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from audit.models import Role
from dashboard import data, session_cookie

ROLE_RANK = {Role.viewer: 0, Role.reviewer: 1, Role.admin: 2}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
SESSION_KEY = "warden_session"
COOKIE = session_cookie.COOKIE
#: a cookie to set in the browser on the next run: (value, max-age seconds; 0 deletes it)
PENDING_COOKIE_KEY = "warden_cookie_pending"
#: how often a live session records activity in the database (idle timeout), seconds
TOUCH_EVERY_S = 30.0

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
    #: the server-side row's key (sha256 of the session id); None only for sessions made in tests
    token_hash: str | None = None
    last_touch: float = 0.0

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


# -- signed session cookies ----------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _sign(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


def make_token(secret: bytes, session_id: str, expires: int) -> str:
    """The cookie value: ``<id>.<expiry epoch>.<HMAC-SHA256 of both>``."""
    payload = f"{session_id}.{expires}"
    return f"{payload}.{_sign(secret, payload)}"


def read_token(secret: bytes, token: str, now: float) -> str | None:
    """The session id of a well-signed, unexpired token; None for anything else."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    session_id, expires, sig = parts
    if not hmac.compare_digest(sig, _sign(secret, f"{session_id}.{expires}")):
        return None
    return session_id if int(expires) > now else None


def id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def load_secret(key_file: Path) -> bytes:
    """``WARDEN_DASHBOARD_SECRET``, or a random key kept in ``key_file`` (created 0600 on first use)."""
    from dashboard.settings import SECRET_ENV

    env = os.environ.get(SECRET_ENV)
    if env:
        return env.encode()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return key_file.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_urlsafe(48).encode())
    return key_file.read_bytes().strip()


def start_session(engine: Engine, secret: bytes, session: Session, max_session_s: float) -> str:
    """Store a new server-side session for ``session`` and return its signed cookie value."""
    session_id = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    expires = int(now.timestamp() + max_session_s)
    session.token_hash = id_hash(session_id)
    session.last_touch = time.time()
    data.create_session(
        engine, id_hash=session.token_hash, user=session.user, now=now, expires_at=datetime.fromtimestamp(expires, UTC)
    )
    return make_token(secret, session_id, expires)


def resume_session(
    engine: Engine, secret: bytes, token: str, idle_timeout_s: float, *, now: float | None = None
) -> Session | None:
    """The session a cookie stands for, if it is signed, unexpired, not ended, not idle, and its user is active."""
    now = time.time() if now is None else now
    session_id = read_token(secret, token, now)
    if session_id is None:
        return None
    stored = data.find_session(engine, id_hash(session_id))
    if stored is None or stored.ended_at is not None:
        return None
    if stored.expires_at.timestamp() <= now or now - stored.last_seen.timestamp() > idle_timeout_s:
        return None
    user = data.get_user(engine, stored.user_name)
    if user is None or user.disabled:
        return None
    return Session(user.name, Role(user.role), stored.created_at.timestamp(), now, stored.id_hash, 0.0)


def still_open(engine: Engine, session: Session, now: float) -> bool:
    """The server-side row is not ended (logged out elsewhere); records activity every ``TOUCH_EVERY_S``."""
    if session.token_hash is None:
        return True
    stored = data.find_session(engine, session.token_hash)
    if stored is None or stored.ended_at is not None:
        return False
    if now - session.last_touch >= TOUCH_EVERY_S:
        data.touch_session(engine, session.token_hash, datetime.fromtimestamp(now, UTC))
        session.last_touch = now
    return True
