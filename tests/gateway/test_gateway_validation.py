"""Request validation before anything reaches the upstream, and the retry / timeout rules.

Every refused body is a 400 in the OpenAI error shape whose ``param`` names the field, and
the upstream never sees it. Retries happen only before any answer was received, for
connection failures, 429 and 5xx; a read timeout is a 504 at once, never sent again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.gateway_harness import CLIENT_KEY, RunningGateway, running_gateway, write_config
from tests.upstream import SimulatorHandle

POLICY = """
name: plain
input:
  - {check: deny_terms, terms: [forbidden-word], action: block}
"""
USER = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def gw(simulator: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = write_config(
        tmp_path_factory.mktemp("validation"),
        simulator.base_url,
        policy_text=POLICY,
        extra=(
            "upstream: {read_timeout_s: 1.0, timeout_s: 10, num_retries: 2}\n"
            "limits: {max_messages: 50, max_tools: 4, max_inputs: 8}\n"
            "audit: {enabled: false}\n"
        ),
    )
    with running_gateway(config) as running:
        yield running


def post(gw: RunningGateway, body: dict[str, Any], endpoint: str = "chat/completions") -> httpx.Response:
    return httpx.post(
        f"{gw.base_url}/{endpoint}",
        content=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"},
        timeout=30,
    )


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": USER, **fields}


REFUSED = [
    (chat(max_tokens=-5), "max_tokens"),
    (chat(max_tokens=0), "max_tokens"),
    (chat(max_tokens="100"), "max_tokens"),
    (chat(max_tokens=1.5), "max_tokens"),
    (chat(max_completion_tokens=-1), "max_completion_tokens"),
    (chat(n=0), "n"),
    (chat(n=True), "n"),
    (chat(temperature=2.5), "temperature"),
    (chat(temperature=-0.1), "temperature"),
    (chat(temperature="hot"), "temperature"),
    (chat(top_p=1.01), "top_p"),
    (chat(presence_penalty=-2.5), "presence_penalty"),
    (chat(frequency_penalty=3), "frequency_penalty"),
    (chat(top_logprobs=21), "top_logprobs"),
    (chat(logit_bias={"50256": 101}), "logit_bias.50256"),
    (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
    (chat(stream="yes"), "stream"),
    (chat(stream_options={"include_usage": "yes"}), "stream_options.include_usage"),
    ({"model": "gpt-4o-mini", "messages": USER * 51}, "messages"),
    ({"model": "gpt-4o-mini", "messages": []}, "messages"),
    (chat(tools=[{"type": "function", "function": {"name": f"f{i}"}} for i in range(5)]), "tools"),
    (chat(tools=[{"type": "function", "function": {"name": 7}}]), "tools[0].function.name"),
    (chat(tools="all"), "tools"),
    (chat(response_format={"type": "yaml"}), "response_format.type"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": "gpt-4o-mini", "messages": [{"content": "x"}]}, "messages[0].role"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
    (
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
        "messages[0].content[0].text",
    ),
    (
        {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"arguments": {}}}]},
            ],
        },
        "messages[1].tool_calls[0].function.arguments",
    ),
    ({"model": "gpt-4o-mini", "messages": ["hello"]}, "messages[0]"),
]


@pytest.mark.parametrize(("body", "param"), REFUSED, ids=[p for _, p in REFUSED])
def test_invalid_chat_fields_are_400_naming_the_field(
    gw: RunningGateway, sim: SimulatorHandle, body: dict[str, Any], param: str
) -> None:
    r = post(gw, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert param in error["message"]
    assert sim.requests() == []  # nothing reached the upstream


@pytest.mark.parametrize(
    ("endpoint", "body", "param"),
    [
        ("completions", {"model": "gpt-4o-mini", "prompt": "x", "max_tokens": -5}, "max_tokens"),
        ("completions", {"model": "gpt-4o-mini", "prompt": ["x"] * 9}, "prompt"),
        ("completions", {"model": "gpt-4o-mini", "prompt": []}, "prompt"),
        ("completions", {"model": "gpt-4o-mini", "prompt": "x", "best_of": 0}, "best_of"),
        ("embeddings", {"model": "text-embedding-3-small", "input": ["x"] * 9}, "input"),
        ("embeddings", {"model": "text-embedding-3-small", "input": {"x": 1}}, "input"),
        ("embeddings", {"model": "text-embedding-3-small", "input": "x", "dimensions": 0}, "dimensions"),
    ],
)
def test_invalid_completion_and_embedding_fields(
    gw: RunningGateway, sim: SimulatorHandle, endpoint: str, body: dict[str, Any], param: str
) -> None:
    r = post(gw, body, endpoint)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert sim.requests() == []


def test_valid_requests_at_the_edges_pass(gw: RunningGateway, sim: SimulatorHandle) -> None:
    body = chat(
        max_tokens=1,
        temperature=2,
        top_p=0,
        presence_penalty=-2,
        frequency_penalty=2.0,
        n=1,
        stop=["a", "b", "c", "d"],
        logit_bias={"50256": -100},
        seed=-1,
        tools=[{"type": "function", "function": {"name": f"f{i}", "parameters": {"type": "object"}}} for i in range(4)],
        vendor_extension={"kept": True},  # unknown fields still pass through
    )
    body["messages"] = [{"role": "system", "content": "be brief"}] + USER * 49
    r = post(gw, body)
    assert r.status_code == 200, r.text
    sent = sim.bodies()[-1]
    assert sent["vendor_extension"] == {"kept": True} and len(sent["messages"]) >= 50


def test_sdk_sees_bad_request_with_param(gw: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        gw.client().chat.completions.create(model="gpt-4o-mini", messages=USER, max_tokens=-5)  # type: ignore[arg-type]
    assert info.value.param == "max_tokens"


def test_5xx_and_429_before_any_answer_are_retried(gw: RunningGateway, sim: SimulatorHandle) -> None:
    sim.script(match="flaky", content="recovered")
    sim.script(match="flaky", fault="refuse_500", times=1)
    sim.script(match="flaky", fault="status_429", times=1)
    r = post(gw, chat(messages=[{"role": "user", "content": "be flaky"}]))
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "recovered"
    assert len(sim.requests()) == 3


def test_retries_stop_at_num_retries(gw: RunningGateway, sim: SimulatorHandle) -> None:
    sim.script(match="broken", fault="refuse_500")
    r = post(gw, chat(messages=[{"role": "user", "content": "always broken"}]))
    assert r.status_code == 502
    assert len(sim.requests()) == 3  # the first try and num_retries: 2


@pytest.mark.parametrize("stream", [False, True], ids=["non-streamed", "streamed"])
def test_read_timeout_is_504_and_never_retried(gw: RunningGateway, sim: SimulatorHandle, stream: bool) -> None:
    sim.script(match="hang", fault="hang")
    r = post(gw, chat(messages=[{"role": "user", "content": "please hang"}], stream=stream))
    assert r.status_code == 504, r.text
    error = r.json()["error"]
    assert error["code"] == "upstream_timeout" and error["type"] == "api_error"
    assert "1 s" in error["message"]
    assert len(sim.requests()) == 1  # sent once, on a pooled connection or a new one alike


def test_read_timeout_default_is_60_seconds(tmp_path: Path) -> None:
    from gateway.config import UpstreamSettings

    assert UpstreamSettings().read_timeout_s == 60.0
