"""The session cookie, set by the server as ``HttpOnly``: a one-time ticket exchanged over HTTP.

A Streamlit script talks to the browser over a WebSocket, and a WebSocket message cannot set a
cookie; a cookie written by page script (``document.cookie``) cannot be ``HttpOnly``, so any
script injected into the page could read it. So the script never hands the session token to the
browser. After a login it files the signed token here under a random, single-use *ticket* that
expires in ``TICKET_TTL_S``, and the page posts only that ticket to ``/_warden/session`` (a route
of the dashboard's own server, ``dashboard.server``); the answer sets the cookie with
``HttpOnly; SameSite=Strict; Path=/`` (and ``Secure`` over HTTPS). Logging out posts a ticket
for an empty value, which deletes the cookie. Streamlit still reads the cookie from the
WebSocket's handshake (``st.context.cookies``), which carries ``HttpOnly`` cookies like any other.

Tickets live in this process's memory: the script and the route run in the same server process.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

COOKIE = "warden_session"
PATH = "/_warden/session"
#: how long a ticket may wait for the page to post it
TICKET_TTL_S = 60.0
#: a ticket is this many URL-safe characters; anything longer is refused unread
_TICKET_CHARS = 43


@dataclass(frozen=True, slots=True)
class _Pending:
    value: str
    max_age: int
    expires: float


class Tickets:
    """Single-use tickets for cookie values, thread-safe (scripts run in their own threads)."""

    def __init__(self, ttl_s: float = TICKET_TTL_S) -> None:
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}

    def issue(self, value: str, max_age: int, now: float | None = None) -> str:
        """A ticket for setting the cookie to ``value`` for ``max_age`` seconds (0: delete it)."""
        now = time.monotonic() if now is None else now
        ticket = secrets.token_urlsafe(32)
        with self._lock:
            self._pending = {t: p for t, p in self._pending.items() if p.expires > now}
            self._pending[ticket] = _Pending(value, max(0, int(max_age)), now + self._ttl)
        return ticket

    def redeem(self, ticket: str, now: float | None = None) -> tuple[str, int] | None:
        """The value and max-age a ticket stands for, once; None if unknown, used or expired."""
        now = time.monotonic() if now is None else now
        with self._lock:
            pending = self._pending.pop(ticket, None)
        if pending is None or pending.expires <= now:
            return None
        return pending.value, pending.max_age


TICKETS = Tickets()


def set_cookie_header(value: str, max_age: int, *, secure: bool) -> str:
    parts = [f"{COOKIE}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def _is_https(request: Request) -> bool:
    # Behind a TLS-terminating proxy the server sees plain HTTP; the proxy's header only makes
    # the cookie stricter, so trusting it costs nothing.
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


async def exchange(request: Request) -> Response:
    """``POST /_warden/session`` with a ticket as the body: set (or delete) the cookie it stands for."""
    body = await request.body()
    if len(body) > _TICKET_CHARS * 2:
        return PlainTextResponse("ticket too long", status_code=400)
    found = TICKETS.redeem(body.decode("ascii", errors="replace").strip())
    if found is None:
        return PlainTextResponse("unknown or expired ticket", status_code=400)
    value, max_age = found
    response = Response(status_code=204, headers={"cache-control": "no-store"})
    response.headers["set-cookie"] = set_cookie_header(value, max_age, secure=_is_https(request))
    return response


ROUTES = [Route(PATH, exchange, methods=["POST"])]


def script(ticket: str) -> str:
    """The page script that posts ``ticket`` (and nothing else) to the exchange route."""
    import json

    return (
        f"<script>fetch({json.dumps(PATH)}, {{method: 'POST', body: {json.dumps(ticket)}, "
        "credentials: 'same-origin', cache: 'no-store'});</script>"
    )
