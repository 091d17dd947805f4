"""Policy behaviour end to end: modes, on_block, allow lists, per-key policies, hot reload."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.gateway_harness import CLIENT_KEY, REVIEWER_KEY, RunningGateway, running_gateway, write_config
from tests.upstream import SimulatorHandle

ENFORCE = """
name: enforce
input:
  - {check: regex, patterns: ["secret-project-\\\\d+"], entity: PROJECT, action: redact}
  - {check: regex, name: banned, patterns: ["forbidden-word"], action: block, allow: ["forbidden-word-ok"]}
stream:
  holdback_chars: 32
  checks:
    - {check: regex, patterns: ["ACME-\\\\d{4}"], entity: TICKET, action: redact}
    - {check: regex, name: stopper, patterns: ["launch-code"], action: block}
"""

MONITOR = ENFORCE.replace("name: enforce", "name: monitor\nmode: monitor")
REFUSAL = ENFORCE.replace("name: enforce", "name: refusal\non_block: refusal\nrefusal_text: Sorry, no.")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "monitor.yaml").write_text(MONITOR, encoding="utf-8")
    return tmp_path


@pytest.fixture
def gw(simulator: SimulatorHandle, folder: Path) -> Iterator[RunningGateway]:
    config = write_config(folder, simulator.base_url, policy_text=ENFORCE, extra="audit: {enabled: false}\n")
    # the reviewer key runs under the monitor policy: a key may name its own policy
    config.write_text(
        config.read_text().replace("role: reviewer, id: reviewer-1", "role: reviewer, id: r1, policy: monitor.yaml")
    )
    with running_gateway(config) as running:
        yield running


def chat(gw: RunningGateway, content: str, key: str = CLIENT_KEY, stream: bool = False) -> str:
    client = gw.client(key=key)
    if stream:
        chunks = client.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": content}]
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}])
    return reply.choices[0].message.content or ""


def test_input_redaction_reaches_upstream_masked(gw: RunningGateway, sim: SimulatorHandle) -> None:
    chat(gw, "tell me about secret-project-42 please")
    assert sim.bodies()[-1]["messages"][-1]["content"] == "tell me about <PROJECT> please"


def test_block_and_allow_list(gw: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError):
        chat(gw, "say forbidden-word")
    assert chat(gw, "forbidden-word-ok is fine")


@pytest.mark.parametrize("stream", [True, False])
def test_stream_checks_redact_and_block(gw: RunningGateway, sim: SimulatorHandle, stream: bool) -> None:
    sim.script(match="ticket", content="Your ticket is ACME-1234 and it is open.", chunking="char")
    assert chat(gw, "which ticket?", stream=stream) == "Your ticket is <TICKET> and it is open."
    sim.script(match="codes", content="The launch-code is 0000, do not share.", chunking=2)
    client = gw.client()
    if stream:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "codes?"}]
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "The "
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"
    else:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "codes?"}])
        assert reply.choices[0].finish_reason == "content_filter"
        assert "launch" not in (reply.choices[0].message.content or "")


def test_monitor_mode_changes_nothing(gw: RunningGateway, sim: SimulatorHandle) -> None:
    sim.script(match="ticket", content="Your ticket is ACME-1234.", chunking="char")
    assert (
        chat(gw, "which ticket? forbidden-word secret-project-7", key=REVIEWER_KEY, stream=True)
        == "Your ticket is ACME-1234."
    )
    assert "secret-project-7" in sim.bodies()[-1]["messages"][-1]["content"]


def test_refusal_mode(gw: RunningGateway, folder: Path, sim: SimulatorHandle) -> None:
    (folder / "policy.yaml").write_text(REFUSAL, encoding="utf-8")
    wait_for_policy(gw, "refusal")
    before = len(sim.bodies())
    assert chat(gw, "say forbidden-word") == "Sorry, no."
    assert chat(gw, "say forbidden-word", stream=True) == "Sorry, no."
    assert len(sim.bodies()) == before  # the upstream was never asked


def wait_for_policy(gw: RunningGateway, name: str, timeout: float = 2.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        names = [p["name"] for p in httpx.get(f"{gw.url}/health").json()["policies"]]
        if name in names:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"policy {name} not loaded within {timeout}s")


def test_hot_reload_and_invalid_edit_keeps_last_good(
    gw: RunningGateway, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(openai.BadRequestError):
        chat(gw, "say forbidden-word")
    (folder / "policy.yaml").write_text(
        ENFORCE.replace("name: enforce", "name: edited").replace('forbidden-word"]', 'other-word"]'), encoding="utf-8"
    )
    wait_for_policy(gw, "edited")
    assert chat(gw, "say forbidden-word")
    (folder / "policy.yaml").write_text("name: broken\ninput:\n  - {check: no_such_check}\n", encoding="utf-8")
    time.sleep(1.0)
    names = [p["name"] for p in httpx.get(f"{gw.url}/health").json()["policies"]]
    assert "edited" in names and "broken" not in names
    assert any("rejected" in r.getMessage() for r in caplog.records)


JSON_POLICY = """
name: json
output:
  - {check: json_schema, action: block}
"""


def test_json_schema_follows_the_requests_response_format(simulator: SimulatorHandle, tmp_path: Path) -> None:
    config = write_config(tmp_path, simulator.base_url, policy_text=JSON_POLICY, extra="audit: {enabled: false}\n")
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    with running_gateway(config) as gw:
        client = gw.client()
        plain = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert plain.choices[0].finish_reason == "stop"  # no JSON asked for: the check stays out of the way
        simulator.script(match="city", content='{"town": "Paris"}')
        wrong = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "which city?"}],
            response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
        )
        assert wrong.choices[0].finish_reason == "content_filter"
        simulator.script(match="city", content='{"city": "Paris"}')
        right = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "which city?"}],
            response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
        )
        assert right.choices[0].message.content == '{"city": "Paris"}'
        simulator.script(match="object", content="not json at all")
        obj = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "an object please"}],
            response_format={"type": "json_object"},
        )
        assert obj.choices[0].finish_reason == "content_filter"
    simulator.clear()


def test_length_limits_count_messages(simulator: SimulatorHandle, tmp_path: Path) -> None:
    policy = "name: short\ninput:\n  - {check: length, max_messages: 2, action: block}\n"
    config = write_config(tmp_path, simulator.base_url, policy_text=policy, extra="audit: {enabled: false}\n")
    with running_gateway(config) as gw:
        client = gw.client()
        two = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
        assert client.chat.completions.create(model="gpt-4o-mini", messages=two).choices
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="gpt-4o-mini", messages=[*two, {"role": "user", "content": "c"}])
