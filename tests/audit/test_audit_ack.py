"""``audit.ack: durable``: an answer leaves only once its record is in the database or spool."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.gateway_harness import CLIENT_KEY, running_gateway, write_config
from tests.upstream import SimulatorHandle

POLICY = "name: ack\ninput:\n  - {check: deny_terms, terms: [forbidden-word], action: block}\n"


def ask(url: str, stream: bool) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        json={"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "hello"}]},
        timeout=30,
    )


def test_every_answer_has_its_record_when_it_arrives(simulator: SimulatorHandle, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        simulator.base_url,
        policy_text=POLICY,
        database_url="sqlite:///./ack.db",
        extra="audit: {ack: durable}\n",
    )
    with running_gateway(config) as gw:
        ids = []
        for i in range(6):
            r = ask(gw.url, stream=i % 2 == 0)
            assert r.status_code == 200 and (i % 2 or r.text.endswith("data: [DONE]\n\n"))
            ids.append(r.headers["x-warden-request-id"])
            # no flush: the record is there as soon as the answer is
            with sqlite3.connect(tmp_path / "ack.db") as conn:
                stored = conn.execute("SELECT count(*) FROM audit_requests WHERE request_id = ?", (ids[-1],))
                assert stored.fetchone()[0] == 1


def test_an_answer_whose_record_cannot_be_kept_is_refused(simulator: SimulatorHandle, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        simulator.base_url,
        policy_text=POLICY,
        database_url="nosuchdriver://nowhere/db",  # the writer cannot be made: records stay in memory
        extra="audit: {ack: durable, ack_timeout_s: 0.3}\n",
    )
    with running_gateway(config) as gw:
        r = ask(gw.url, stream=False)
        assert r.status_code == 503 and r.json()["error"]["code"] == "audit_unavailable"
        r = ask(gw.url, stream=True)
        assert r.status_code == 200
        assert '"audit_unavailable"' in r.text and "[DONE]" not in r.text


@pytest.mark.parametrize("value", ["sometimes", 5])
def test_ack_mode_is_validated(simulator: SimulatorHandle, tmp_path: Path, value: object) -> None:
    from gateway.config import load_config
    from policies.yamlio import YamlModelError

    config = write_config(tmp_path, simulator.base_url, policy_text=POLICY, extra=f"audit: {{ack: {value}}}\n")
    with pytest.raises(YamlModelError, match=r"audit\.ack"):
        load_config(config)
