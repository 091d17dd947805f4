"""The gateway through the real openai SDK: the OpenAI surface, errors and request ids."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.gateway_harness import CLIENT_KEY, RunningGateway, running_gateway, write_config
from tests.upstream import SimulatorHandle

POLICY = """
name: plain
constrain:
  system_prompt: Be safe.
input:
  - {check: regex, patterns: ["forbidden-word"], action: block}
"""


@pytest.fixture(scope="module")
def gw(simulator: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    folder = tmp_path_factory.mktemp("gw")
    config = write_config(
        folder, simulator.base_url, policy_text=POLICY, extra="max_body_bytes: 65536\naudit: {enabled: false}\n"
    )
    with running_gateway(config) as running:
        yield running


def test_models_lists_configured_models(gw: RunningGateway) -> None:
    ids = [m.id for m in gw.client().models.list()]
    assert ids == ["gpt-4o-mini", "sim-reasoner", "sim-think", "text-embedding-3-small"]


def test_chat_non_streamed(gw: RunningGateway, sim: SimulatorHandle) -> None:
    sim.script(match="capital", content="Paris is the capital of France.")
    reply = gw.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    assert reply.choices[0].message.content == "Paris is the capital of France."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.total_tokens > 0


def test_chat_streamed_with_usage(gw: RunningGateway, sim: SimulatorHandle) -> None:
    sim.script(match="capital", content="Paris is the capital of France.", chunking="char")
    stream = gw.client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Paris is the capital of France."
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_parameters_pass_through_and_preamble_is_added(gw: RunningGateway, sim: SimulatorHandle) -> None:
    gw.client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.3,
        top_p=0.9,
        seed=7,
        stop=["\n\n"],
        user="u-1",
    )
    body = sim.bodies()[-1]
    assert body["temperature"] == 0.3 and body["seed"] == 7 and body["stop"] == ["\n\n"] and body["user"] == "u-1"
    assert body["messages"][0] == {"role": "system", "content": "Be safe."}
    assert body["messages"][-1]["content"] == "hi"


def test_client_routing_fields_are_never_forwarded(gw: RunningGateway, sim: SimulatorHandle) -> None:
    gw.client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={
            "api_base": "http://evil.example",
            "api_key": "sk-stolen",
            "base_url": "http://x",
            "user_config": {"model_list": []},
            "litellm_params": {},
            "aws_region_name": "x",
        },
    )
    body = sim.bodies()[-1]
    for key in ("api_base", "api_key", "base_url", "user_config", "litellm_params", "aws_region_name"):
        assert key not in body
    assert sim.requests()[-1].headers.get("authorization") == "Bearer sk-sim"


def test_tools_and_tool_calls_stream(gw: RunningGateway, sim: SimulatorHandle) -> None:
    sim.script(match="weather", tool_call={"name": "get_weather", "arguments": {"city": "Paris"}})
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    stream = gw.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "weather in Paris?"}], tools=tools, stream=True
    )
    args, name, finish = "", None, None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                name = name or (call.function.name if call.function else None)
                args += (call.function.arguments or "") if call.function else ""
            finish = choice.finish_reason or finish
    assert name == "get_weather" and json.loads(args) == {"city": "Paris"} and finish == "tool_calls"


def test_n_choices(gw: RunningGateway) -> None:
    reply = gw.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], n=3
    )
    assert sorted(c.index for c in reply.choices) == [0, 1, 2]
    stream = gw.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], n=2, stream=True
    )
    seen = {c.index for chunk in stream for c in chunk.choices if c.delta.content}
    assert seen == {0, 1}


def test_legacy_completions_and_embeddings(gw: RunningGateway) -> None:
    c = gw.client().completions.create(model="gpt-4o-mini", prompt="Say hello")
    assert c.choices[0].text
    streamed = "".join(
        x.choices[0].text
        for x in gw.client().completions.create(model="gpt-4o-mini", prompt="Say hello", stream=True)
        if x.choices
    )
    assert streamed == c.choices[0].text
    e = gw.client().embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(e.data) == 2 and len(e.data[0].embedding) > 0


def test_embedding_input_is_checked(gw: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        gw.client().embeddings.create(model="text-embedding-3-small", input="a forbidden-word here")
    assert info.value.code == "content_policy_violation"


def test_policy_block_has_openai_shape(gw: RunningGateway) -> None:
    r = httpx.post(
        f"{gw.base_url}/chat/completions",
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "say forbidden-word"}]},
    )
    assert r.status_code == 400
    assert r.headers["x-should-retry"] == "false"
    body = r.json()
    assert body["error"] == {
        "message": body["error"]["message"],
        "type": "invalid_request_error",
        "code": "content_policy_violation",
        "param": None,
    }
    assert body["warden"]["request_id"] == r.headers["x-warden-request-id"]
    assert body["warden"]["stage"] == "input" and body["warden"]["policy"] == "plain"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"authorization": "Bearer sk-wrong-key-123"}, 401), ({"authorization": "Basic abc"}, 401)],
)
def test_auth_errors(gw: RunningGateway, headers: dict[str, str], status: int) -> None:
    r = httpx.post(f"{gw.base_url}/chat/completions", headers=headers, json={})
    assert r.status_code == status
    assert r.json()["error"]["code"] == "invalid_api_key"
    assert r.headers["x-warden-request-id"].startswith("req_")


def test_sdk_sees_authentication_error(gw: RunningGateway) -> None:
    with pytest.raises(openai.AuthenticationError):
        gw.client(key="sk-not-a-real-key").models.list()


def test_unknown_model(gw: RunningGateway) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        gw.client().chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found"


def _post(gw: RunningGateway, content: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gw.base_url}/chat/completions",
        content=content,
        headers={"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json", **headers},
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[1, 2, 3]",
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
        b"[" * 5000 + b"]" * 5000,
        b"",
    ],
    ids=["syntax", "not-object", "invalid-utf8", "deeply-nested", "empty"],
)
def test_malformed_bodies(gw: RunningGateway, raw: bytes) -> None:
    r = _post(gw, raw)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-4o-mini"},
        {"model": "gpt-4o-mini", "messages": "hello"},
        {"model": 5, "messages": [{"role": "user", "content": "x"}]},
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "n": 1000},
        {"model": "gpt-4o-mini", "messages": [{"content": "x"}]},
    ],
    ids=["no-messages", "messages-string", "model-int", "n-too-big", "no-role"],
)
def test_wrong_types(gw: RunningGateway, body: dict[str, object]) -> None:
    r = _post(gw, json.dumps(body).encode())
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"]


def test_huge_body_is_413(gw: RunningGateway) -> None:
    big = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 100_000}]})
    assert _post(gw, big.encode()).status_code == 413


def test_huge_body_without_content_length_is_413(gw: RunningGateway) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}]}'

    r = httpx.post(
        f"{gw.base_url}/chat/completions", content=chunks(), headers={"authorization": f"Bearer {CLIENT_KEY}"}
    )
    assert r.status_code == 413


def test_health_and_metrics(gw: RunningGateway) -> None:
    h = httpx.get(f"{gw.url}/health")
    assert h.status_code == 200 and h.json()["policies"][0]["name"] == "plain"
    assert "x-warden-request-id" in h.headers
    m = httpx.get(f"{gw.url}/metrics")
    assert "warden_requests" in m.text


def test_unknown_route_is_openai_shaped_404(gw: RunningGateway) -> None:
    r = httpx.get(f"{gw.url}/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert "x-warden-request-id" in r.headers


def test_client_role_cannot_read_audit(gw: RunningGateway) -> None:
    r = httpx.get(f"{gw.base_url}/audit/requests/req_x", headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert r.status_code == 403


def test_config_error_names_file_line_and_field(tmp_path: Path) -> None:
    from gateway.config import load_config
    from policies.yamlio import YamlModelError

    path = tmp_path / "bad.yaml"
    path.write_text(
        "model_list:\n  - model_name: m\n    litellm_params: {model: openai/m}\nkeys:\n"
        "  - {key: abc, tenant: t}\nmax_body_bytes: lots\n",
        encoding="utf-8",
    )
    with pytest.raises(YamlModelError) as info:
        load_config(path)
    text = str(info.value)
    assert f"{path}:5: keys[0].key" in text
    assert f"{path}:6: max_body_bytes" in text
