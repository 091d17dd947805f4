"""The LLM simulator, driven through the real openai SDK over loopback."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from tests.upstream import SimulatorHandle, running_simulator

ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Tell me about the blue whale"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def module_sim() -> Iterator[SimulatorHandle]:
    with running_simulator() as handle:
        yield handle


@pytest.fixture
def sim(module_sim: SimulatorHandle) -> SimulatorHandle:
    module_sim.clear()
    return module_sim


@pytest.fixture
def client(sim: SimulatorHandle) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.base_url, api_key="sk-sim", max_retries=0, timeout=10.0) as c:
        yield c


def stream_chat(client: openai.OpenAI, **kwargs: Any) -> list[ChatCompletionChunk]:
    kwargs.setdefault("model", "sim-chat")
    kwargs.setdefault("messages", ASK)
    return list(client.chat.completions.create(stream=True, **kwargs))


def joined(chunks: list[ChatCompletionChunk], field: str = "content", index: int = 0) -> str:
    deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].index == index]
    return "".join(getattr(d, field, None) or "" for d in deltas)


def finish_reasons(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


def test_models_are_listed(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert {"sim-chat", "sim-reason", "sim-think"} <= set(ids)


def test_stream_starts_with_role_then_streams_words_and_finishes(client: openai.OpenAI) -> None:
    chunks = stream_chat(client)
    assert chunks[0].choices[0].delta.role == "assistant"
    content_deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_deltas) > 5
    assert all(len(d.split()) == 1 for d in content_deltas)
    assert "blue whale" in joined(chunks)
    assert finish_reasons(chunks) == ["stop"]
    assert chunks[-1].choices[0].delta.content is None


def test_stream_usage_chunk_only_when_asked(client: openai.OpenAI) -> None:
    plain = stream_chat(client)
    assert all(c.usage is None for c in plain)
    with_usage = stream_chat(client, stream_options={"include_usage": True})
    last = with_usage[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == len(joined(with_usage).split())
    assert last.usage.prompt_tokens == 6


def test_non_streamed_reply_has_message_and_usage(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="sim-chat", messages=ASK)
    assert reply.object == "chat.completion"
    assert "blue whale" in (reply.choices[0].message.content or "")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 5


def test_reason_model_streams_numbered_steps_with_true_arithmetic(client: openai.OpenAI) -> None:
    chunks = stream_chat(client, model="sim-reason")
    reasoning = joined(chunks, "reasoning_content")
    assert re.findall(r"^Step (\d+):", reasoning, re.M) == ["1", "2", "3"]
    a, b, product = map(int, re.findall(r"(\d+) × (\d+) = (\d+)", reasoning)[0])
    assert a * b == product
    first_reasoning = next(
        i for i, c in enumerate(chunks) if c.choices and getattr(c.choices[0].delta, "reasoning_content", None)
    )
    first_content = next(i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content)
    assert first_reasoning < first_content
    assert "<think>" not in joined(chunks)


def test_think_model_puts_steps_in_think_tags(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="sim-think", messages=ASK)
    text = reply.choices[0].message.content or ""
    assert text.startswith("<think>\nStep 1:")
    assert "</think>" in text
    assert "blue whale" in text.split("</think>")[1]


def test_tool_call_streams_arguments_in_several_deltas(client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Use get_weather for Paris please"}]
    chunks = stream_chat(client, messages=messages, tools=[WEATHER_TOOL])
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].function is not None
    assert calls[0].function.name == "get_weather"
    pieces = [tc.function.arguments for tc in calls[1:] if tc.function and tc.function.arguments]
    assert len(pieces) > 1
    assert json.loads("".join(pieces)) == {"city": "example", "unit": "celsius"}
    assert finish_reasons(chunks) == ["tool_calls"]


def test_tools_offered_but_not_asked_for_get_text(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="sim-chat", messages=ASK, tools=[WEATHER_TOOL])
    assert reply.choices[0].message.tool_calls is None
    after_tool: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "use the tool"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    followed = client.chat.completions.create(model="sim-chat", messages=after_tool, tools=[WEATHER_TOOL])
    assert followed.choices[0].finish_reason == "stop"


def test_scripted_tool_call_without_tools_in_request(client: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.script(tool_call={"name": "lookup", "arguments": {"q": "whales"}, "id": "call_fixed"})
    reply = client.chat.completions.create(model="sim-chat", messages=ASK)
    call = (reply.choices[0].message.tool_calls or [])[0]
    assert call.id == "call_fixed"
    assert call.type == "function"
    assert json.loads(call.function.arguments) == {"q": "whales"}
    assert reply.choices[0].finish_reason == "tool_calls"


def test_n_choices_each_with_its_index(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="sim-chat", messages=ASK, n=3)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    chunks = stream_chat(client, n=2)
    assert {c.choices[0].index for c in chunks if c.choices} == {0, 1}
    assert joined(chunks, index=0) == joined(chunks, index=1) != ""
    assert finish_reasons(chunks) == ["stop", "stop"]


def test_stop_cuts_before_stop_string(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="sim-chat", messages=ASK, stop=["friendly"])
    text = reply.choices[0].message.content or ""
    assert "friendly" not in text
    assert text.endswith("short, ")
    assert reply.choices[0].finish_reason == "stop"


def test_max_tokens_cuts_with_length(client: openai.OpenAI) -> None:
    chunks = stream_chat(client, max_tokens=4, stream_options={"include_usage": True})
    assert len(joined(chunks).split()) == 4
    assert finish_reasons(chunks) == ["length"]
    reply = client.chat.completions.create(model="sim-chat", messages=ASK, max_completion_tokens=3)
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 3
    assert reply.choices[0].finish_reason == "length"


def test_response_format_replies_json(client: openai.OpenAI) -> None:
    as_object = client.chat.completions.create(model="sim-chat", messages=ASK, response_format={"type": "json_object"})
    assert "blue whale" in json.loads(as_object.choices[0].message.content or "")["answer"]
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    as_schema = client.chat.completions.create(model="sim-chat", messages=ASK, response_format=fmt)
    assert json.loads(as_schema.choices[0].message.content or "") == {"name": "example", "age": 1}


def test_tokens_model_replies_exact_token_count(client: openai.OpenAI) -> None:
    chunks = stream_chat(client, model="sim-tokens-200", stream_options={"include_usage": True})
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 200
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 200


def test_legacy_completions_stream_and_not(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="sim-chat", prompt="Say hello to the sea", max_tokens=5)
    assert len(reply.choices[0].text.split()) == 5
    assert reply.choices[0].finish_reason == "length"
    chunks = list(
        client.completions.create(
            model="sim-chat", prompt="Say hi", stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert '"Say hi"' in text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text.split())


def test_embeddings_are_deterministic_unit_vectors(client: openai.OpenAI) -> None:
    first = client.embeddings.create(model="sim-embed", input=["alpha", "beta", "alpha"])
    vectors = [d.embedding for d in first.data]
    assert [len(v) for v in vectors] == [8, 8, 8]
    assert vectors[0] == pytest.approx(vectors[2])
    assert vectors[0] != pytest.approx(vectors[1])
    assert sum(x * x for x in vectors[0]) == pytest.approx(1.0, abs=1e-5)
    wide = client.embeddings.create(model="sim-embed", input="alpha", dimensions=16, encoding_format="float")
    assert len(wide.data[0].embedding) == 16


def test_requests_are_recorded_with_unknown_fields(client: openai.OpenAI, sim: SimulatorHandle) -> None:
    client.chat.completions.create(model="sim-chat", messages=ASK, extra_body={"api_base": "http://evil", "seed": 7})
    [recorded] = sim.requests()
    assert recorded.path == "/v1/chat/completions"
    assert recorded.body["api_base"] == "http://evil"
    assert recorded.body["messages"] == ASK
    assert recorded.headers["authorization"] == "Bearer sk-sim"
    httpx.delete(f"{sim.root_url}/_sim/requests").raise_for_status()
    assert sim.bodies() == []


def test_scripts_match_newest_first_and_expire(client: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.script(match="*", content="Generic.")
    sim.script(match="whale", content="Whales are big.", times=1)

    def ask() -> str:
        return client.chat.completions.create(model="sim-chat", messages=ASK).choices[0].message.content or ""

    assert ask() == "Whales are big."
    assert ask() == "Generic."
    httpx.delete(f"{sim.root_url}/_sim/script").raise_for_status()
    assert "blue whale" in ask()


def test_script_matches_model_and_scripted_reasoning(client: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.script(model="other", content="Not for you.")
    sim.script(model="sim-chat", content="Answer.", reasoning="Step 1: 2 + 2 = 4.", reasoning_field="reasoning")
    chunks = stream_chat(client)
    assert joined(chunks) == "Answer."
    assert joined(chunks, "reasoning") == "Step 1: 2 + 2 = 4."


@pytest.mark.parametrize(
    ("chunking", "expected"),
    [
        ("char", ["a", "b", "c", " ", "d", "e"]),
        ("whole", ["abc de"]),
        (4, ["abc ", "de"]),
        ("word", ["abc ", "de"]),
    ],
)
def test_script_chunking(client: openai.OpenAI, sim: SimulatorHandle, chunking: str | int, expected: list[str]) -> None:
    sim.script(content="abc de", chunking=chunking)
    chunks = stream_chat(client)
    assert [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content] == expected


def test_invalid_script_is_rejected(sim: SimulatorHandle) -> None:
    with pytest.raises(ValueError, match="fault"):
        sim.script(fault="explode")
    with pytest.raises(ValueError, match="conten"):
        sim.script(contents="typo")


def test_refuse_500_and_status_429(client: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.script(fault="refuse_500", times=1)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="sim-chat", messages=ASK)
    sim.script(fault="status_429", times=1)
    with pytest.raises(openai.RateLimitError) as caught:
        stream_chat(client)
    assert caught.value.response.headers["retry-after-ms"] == "50"
    assert client.chat.completions.create(model="sim-chat", messages=ASK).choices[0].finish_reason == "stop"
    assert sim.stats().requests_failed == 2


def test_die_mid_stream_drops_connection_without_done(client: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.script(fault="die_mid_stream", fault_after=3)
    received: list[ChatCompletionChunk] = []
    with pytest.raises(httpx.RemoteProtocolError):
        received.extend(client.chat.completions.create(model="sim-chat", messages=ASK, stream=True))
    stats = sim.wait_for_stats(lambda s: s.in_flight == 0)
    assert stats.streams_failed == 1
    assert stats.streams_completed == 0


def test_malformed_chunk_breaks_json(client: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.script(fault="malformed_chunk")
    with pytest.raises(json.JSONDecodeError):
        stream_chat(client)


def test_hang_never_answers_and_counts_the_client_leaving(sim: SimulatorHandle) -> None:
    sim.script(fault="hang")
    with (
        openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0, timeout=0.3) as impatient,
        pytest.raises(openai.APITimeoutError),
    ):
        impatient.chat.completions.create(model="sim-chat", messages=ASK)
    stats = sim.wait_for_stats(lambda s: s.in_flight == 0)
    assert stats.requests_cancelled == 1
    assert stats.requests_completed == 0


def test_hang_mid_stream_sends_some_chunks_then_stalls(sim: SimulatorHandle) -> None:
    sim.script(fault="hang_mid_stream", fault_after=4)
    received: list[ChatCompletionChunk] = []
    with (
        openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0, timeout=0.3) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        received.extend(impatient.chat.completions.create(model="sim-chat", messages=ASK, stream=True))
    assert len(received) == 4
    assert sim.wait_for_stats(lambda s: s.streams_cancelled == 1).in_flight == 0


def test_client_leaving_a_slow_stream_is_counted_as_cancelled(client: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.script(content=" ".join(["word"] * 100), delay_ms=20)
    stream = client.chat.completions.create(model="sim-chat", messages=ASK, stream=True)
    for index, _ in enumerate(stream):
        if index == 2:
            break
    stream.close()
    stats = sim.wait_for_stats(lambda s: s.streams_cancelled == 1)
    assert stats.streams_completed == 0
    assert stats.in_flight == 0


def test_completed_stream_is_counted_as_completed(client: openai.OpenAI, sim: SimulatorHandle) -> None:
    stream_chat(client)
    stats = sim.wait_for_stats(lambda s: s.in_flight == 0)
    assert (stats.streams_started, stats.streams_completed, stats.streams_cancelled) == (1, 1, 0)


def test_bad_request_is_openai_shaped(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sim-chat", messages="not a list")  # type: ignore[arg-type]
    assert "messages" in str(caught.value)
