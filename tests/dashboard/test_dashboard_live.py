"""The live page's feed follows a real gateway's ``GET /v1/audit/live`` while requests run."""

from __future__ import annotations

import time
from pathlib import Path

from dashboard.live import LiveFeed
from tests.gateway_harness import REVIEWER_KEY, running_gateway, write_config
from tests.upstream import SimulatorHandle

POLICY = """
name: live
input:
  - {check: deny_terms, name: watch, terms: ["merger"], action: flag}
"""


def wait(condition: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def test_feed_receives_steps_of_a_request(sim: SimulatorHandle, tmp_path: Path) -> None:
    config = write_config(tmp_path, sim.base_url, policy_text=POLICY, extra="audit: {enabled: false}\n")
    with running_gateway(config) as gw:
        feed = LiveFeed(gw.url, lambda: REVIEWER_KEY)
        feed.start()
        try:
            wait(lambda: feed.status == "connected", "the feed to connect")
            reply = gw.client().chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "news about the merger?"}]
            )
            rid = reply.headers["x-warden-request-id"]
            wait(lambda: any(e.request_id == rid and e.stage == "response" for e in feed.snapshot()), "all steps")
            steps = [e for e in feed.snapshot() if e.request_id == rid]
            watch = next(e for e in steps if e.name == "watch")
            assert (watch.stage, watch.verdict, watch.entities) == ("input", "flag", ("DENY_TERM",))
            assert [e.seq for e in steps] == sorted(e.seq for e in steps)
        finally:
            feed.stop()


def test_feed_reports_a_refused_key_without_showing_it(sim: SimulatorHandle, tmp_path: Path) -> None:
    config = write_config(tmp_path, sim.base_url, policy_text=POLICY, extra="audit: {enabled: false}\n")
    with running_gateway(config) as gw:
        feed = LiveFeed(gw.url, lambda: "sk-not-a-real-key-123")
        feed.start()
        try:
            wait(lambda: "refused" in feed.status, "the refusal")
            assert "401" in feed.status
            assert "sk-not-a-real-key-123" not in feed.status
        finally:
            feed.stop()
