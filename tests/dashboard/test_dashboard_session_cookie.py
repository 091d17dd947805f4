"""The session cookie's HttpOnly route: one-time tickets exchanged for a Set-Cookie header."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from dashboard import session_cookie
from dashboard.session_cookie import PATH, ROUTES, Tickets


@pytest.fixture
def client() -> TestClient:
    return TestClient(Starlette(routes=ROUTES))


def test_a_ticket_is_good_once_and_not_after_it_expires() -> None:
    tickets = Tickets(ttl_s=60)
    t = tickets.issue("token-1", 3600, now=0)
    assert tickets.redeem(t, now=1) == ("token-1", 3600)
    assert tickets.redeem(t, now=2) is None  # used
    late = tickets.issue("token-2", 3600, now=0)
    assert tickets.redeem(late, now=61) is None  # expired
    assert tickets.redeem("never-issued", now=0) is None


def test_the_route_sets_an_httponly_strict_cookie_for_a_ticket(client: TestClient) -> None:
    ticket = session_cookie.TICKETS.issue("abc.123.sig", 43200)
    r = client.post(PATH, content=ticket)
    assert r.status_code == 204
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("warden_session=abc.123.sig;")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=43200" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP
    again = client.post(PATH, content=ticket)
    assert again.status_code == 400 and "set-cookie" not in again.headers and "expired" in again.text


def test_over_https_the_cookie_is_secure_and_logout_deletes_it(client: TestClient) -> None:
    r = client.post(PATH, content=session_cookie.TICKETS.issue("", 0), headers={"x-forwarded-proto": "https"})
    assert r.status_code == 204
    assert r.headers["set-cookie"].startswith("warden_session=;") and "Max-Age=0" in r.headers["set-cookie"]
    assert "Secure" in r.headers["set-cookie"]


def test_bad_requests_set_nothing(client: TestClient) -> None:
    assert client.post(PATH, content="x" * 500).status_code == 400
    assert client.post(PATH, content="").status_code == 400
    assert client.get(PATH).status_code == 405
