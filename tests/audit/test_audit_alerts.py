"""Alerts: signed, batched webhooks with retries, against a real local receiver."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from audit.record import Verdict
from audit.settings import AlertRule, AlertSettings
from audit.write.alerts import Alerter, send_verify_failed, sign
from tests.audit_db import make_record

SECRET = "alert-test-secret"


class Receiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.calls += 1
                if outer.calls <= outer.fail_first:
                    self.send_response(503)
                else:
                    outer.bodies.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None: ...

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def alerts(self) -> list[dict[str, object]]:
        out = []
        for headers, body in self.bodies:
            expected = sign(SECRET.encode(), headers["x-warden-timestamp"], body)
            assert headers["x-warden-signature"] == expected
            out.extend(orjson.loads(body)["alerts"])
        return out


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDEN_ALERT_SECRET", SECRET)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.server.shutdown()


def settings(url: str, *rules: AlertRule) -> AlertSettings:
    return AlertSettings(webhook_url=url, rules=rules, batch_s=0.2, backoff_s=0.05)


def blocked(n: int) -> object:
    r = make_record(n)
    r.verdict = Verdict.block
    r.steps[1].verdict = Verdict.block
    return r


@pytest.mark.usefixtures("secret")
def test_blocks_are_batched_signed_and_retried(receiver: Receiver) -> None:
    s = settings(receiver.url, AlertRule(on="block"))
    alerter = Alerter()
    t0 = time.perf_counter()
    for i in range(5):
        alerter.observe(blocked(i), s)  # type: ignore[arg-type]
    alerter.observe(make_record(9), s)  # not blocked: no alert
    assert time.perf_counter() - t0 < 0.5  # observe is a queue put (never the webhook)
    alerter.close()
    alerts = receiver.alerts()
    assert [a["rule"] for a in alerts] == ["block"] * 5
    assert alerts[0]["checks"] == ["check_1"]
    assert receiver.calls == 3  # two 503s, then delivered as one batch
    assert len(receiver.bodies) == 1


@pytest.mark.usefixtures("secret")
def test_a_flag_rate_over_the_threshold_alerts_once_per_window() -> None:
    receiver = Receiver()
    s = settings(receiver.url, AlertRule(on="flag_rate", check="pii", threshold=0.5, min_requests=4, window_s=60))
    alerter = Alerter()
    for i in range(10):
        r = make_record(i)
        if i % 4 == 0:  # pii acted on 3 of 10
            pass
        else:
            r.steps[0].verdict = Verdict.passed
        alerter.observe(r, s)
    for i in range(10, 20):
        alerter.observe(make_record(i), s)  # pii acts on every one: rate climbs past 0.5
    alerter.close()
    alerts = receiver.alerts()
    receiver.server.shutdown()
    assert len(alerts) == 1
    assert alerts[0]["rule"] == "flag_rate" and alerts[0]["check"] == "pii"
    assert float(alerts[0]["rate"]) > 0.5  # type: ignore[arg-type]


@pytest.mark.usefixtures("secret")
def test_writer_behind_and_verify_failed() -> None:
    receiver = Receiver()

    class Stats:
        queue_depth, spool_pending, db_available = 5000, False, True

    s = settings(receiver.url, AlertRule(on="writer_behind", threshold=100), AlertRule(on="verify_failed"))
    alerter = Alerter(writer_stats=Stats)
    alerter.observe(make_record(0), s)
    time.sleep(0.5)
    alerter.close()
    assert send_verify_failed(s, ["hash_mismatch: chain c seq 3"], "default")
    rules = [a["rule"] for a in receiver.alerts()]
    receiver.server.shutdown()
    assert rules == ["writer_behind", "verify_failed"]


def test_a_missing_secret_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WARDEN_ALERT_SECRET", raising=False)
    with pytest.raises(ValueError, match="WARDEN_ALERT_SECRET"):
        send_verify_failed(settings("http://127.0.0.1:9/x", AlertRule(on="verify_failed")), ["x"], "p")
