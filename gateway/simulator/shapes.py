"""The chunk bytes of real OpenAI-compatible servers, so the gateway is measured against each.

Every server sends the same chat-completion stream, but writes each chunk its own way, and
that is what a gateway's stream parser meets. Each shape below follows what that server's
serializer produces (fields, their order, spacing, escapes, what the last chunk carries):

- ``openai``: compact, ``system_fingerprint``, ``"logprobs":null`` (``gateway.simulator.events``)
- ``vllm``: compact pydantic output, no ``system_fingerprint``, ``stop_reason`` on the last chunk
- ``ollama``: Go's ``encoding/json``: ``"role":"assistant"`` in every delta, no ``logprobs``,
  ``<``, ``>``, ``&`` escaped as ``\\u003c``...
- ``llamacpp``: nlohmann::json, keys sorted, ``"content":null`` on the role chunk, ``usage``
  and ``timings`` in the last chunk
- ``tgi``: serde: ``object`` first, ``id`` empty, role in every delta, ``"usage":null``
- ``spaced``: Python's ``json.dumps`` defaults: ``", "`` and ``": "`` separators, ASCII escapes

Only chat streams take a shape; legacy completions and whole (non-streamed) bodies are the
OpenAI ones for every shape.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any, get_args

import orjson

from gateway.simulator.events import DONE, Envelope, chat_deltas, chat_stream
from gateway.simulator.replies import Reply
from gateway.simulator.schema import Chunking, Shape

SHAPES: tuple[Shape, ...] = get_args(Shape)

Choice = dict[str, Any]


def _go_json(obj: Any) -> bytes:
    # Go's encoder escapes HTML-significant characters and the two JS line separators.
    raw = orjson.dumps(obj)
    if b"<" in raw or b">" in raw or b"&" in raw or b"\xe2\x80\xa8" in raw or b"\xe2\x80\xa9" in raw:
        for plain, escaped in _GO_ESCAPES:
            raw = raw.replace(plain, escaped)
    return raw


_GO_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)

_SERIALIZERS: dict[Shape, Callable[[Any], bytes]] = {
    "openai": orjson.dumps,
    "vllm": orjson.dumps,
    "ollama": _go_json,
    "llamacpp": lambda obj: orjson.dumps(obj, option=orjson.OPT_SORT_KEYS),
    "tgi": orjson.dumps,
    "spaced": lambda obj: json.dumps(obj).encode(),
}


def _choices(shape: Shape, index: int, deltas: list[dict[str, Any]], finish: str) -> list[Choice]:
    """One choice's chunks (the ``choices`` entry of each) as ``shape``'s server writes them."""
    if shape == "vllm":
        out = [{"index": index, "delta": d, "logprobs": None, "finish_reason": None} for d in deltas]
        last = {"index": index, "delta": {"content": ""}, "logprobs": None, "finish_reason": finish}
        return [*out, {**last, "stop_reason": None}]
    if shape == "ollama":
        out = [{"index": index, "delta": {"role": "assistant", **d}, "finish_reason": None} for d in deltas]
        return [*out, {"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": finish}]
    if shape == "llamacpp":
        first = {**deltas[0], "content": None} if deltas and deltas[0].get("content") == "" else deltas[0]
        out = [{"index": index, "delta": d, "finish_reason": None} for d in [first, *deltas[1:]]]
        return [*out, {"index": index, "delta": {}, "finish_reason": finish}]
    if shape == "tgi":
        out = [
            {"index": index, "delta": {"role": "assistant", **d}, "logprobs": None, "finish_reason": None}
            for d in deltas
        ]
        last = {"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None}
        return [*out, {**last, "finish_reason": finish}]
    # spaced: OpenAI's fields, Python's spacing
    out = [{"index": index, "delta": d, "logprobs": None, "finish_reason": None} for d in deltas]
    return [*out, {"index": index, "delta": {}, "logprobs": None, "finish_reason": finish}]


def _envelope(shape: Shape, env: Envelope) -> dict[str, Any]:
    if shape == "vllm":
        return env.head()
    if shape == "ollama":
        return env.head(system_fingerprint="fp_ollama")
    if shape == "llamacpp":
        return env.head(system_fingerprint="b5000-warden-sim")
    if shape == "tgi":
        return {
            "object": env.object,
            "id": "",
            "created": env.created,
            "model": env.model,
            "system_fingerprint": "3.0.0-native",
        }
    return env.head(system_fingerprint="fp_sim")


def _timings(tokens: int) -> dict[str, Any]:
    return {
        "prompt_n": 1,
        "prompt_ms": 1.0,
        "prompt_per_token_ms": 1.0,
        "prompt_per_second": 1000.0,
        "predicted_n": tokens,
        "predicted_ms": float(tokens),
        "predicted_per_token_ms": 1.0,
        "predicted_per_second": 1000.0,
    }


def shaped_chat_stream(
    shape: Shape,
    env: Envelope,
    replies: Sequence[Reply],
    chunking: Chunking,
    usage_tail: dict[str, Any] | None,
    total_usage: dict[str, Any],
) -> list[bytes]:
    """The SSE frames of a chat stream as ``shape``'s server sends them."""
    if shape == "openai":
        return chat_stream(env, replies, chunking, usage_tail)
    per_choice = [(chat_deltas(r, chunking), r.finish_reason) for r in replies]
    return shaped_frames(shape, env, per_choice, usage_tail, total_usage)


def serialize(shape: Shape, chunk: dict[str, Any]) -> bytes:
    """One chunk's JSON as ``shape``'s server writes it."""
    return _SERIALIZERS[shape](chunk)


def shaped_frames(
    shape: Shape,
    env: Envelope,
    per_choice: Sequence[tuple[list[dict[str, Any]], str]],
    usage_tail: dict[str, Any] | None,
    total_usage: dict[str, Any],
) -> list[bytes]:
    """The frames of a stream of these deltas (and finish reason) per choice, in ``shape``."""
    dump = _SERIALIZERS[shape]
    head = _envelope(shape, env)
    per_choice_chunks = [_choices(shape, i, deltas, finish) for i, (deltas, finish) in enumerate(per_choice)]
    ordered = [c for c in itertools.chain.from_iterable(itertools.zip_longest(*per_choice_chunks)) if c is not None]
    chunks: list[dict[str, Any]] = [{**head, "choices": [c]} for c in ordered]
    if shape == "tgi":
        chunks = [{**c, "usage": None} for c in chunks]
    counts = {k: total_usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    if shape == "llamacpp" and chunks:
        # llama.cpp always closes with usage and its own timings, in the last chunk
        chunks[-1] = {**chunks[-1], "usage": counts, "timings": _timings(counts["completion_tokens"])}
    elif usage_tail is not None:
        chunks.append({**head, "choices": [], "usage": counts if shape != "spaced" else usage_tail})
    return [b"data: " + dump(c) + b"\n\n" for c in chunks] + [DONE]
