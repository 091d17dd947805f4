"""OpenAI wire shapes: SSE frames and JSON bodies for chat and legacy completions.

Each streamed frame is a prebuilt envelope prefix plus one serialized choice, so a long stream
costs one small orjson call per chunk.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.simulator.replies import Reply
from gateway.simulator.schema import Chunking
from gateway.simulator.text import chunk_arguments, chunk_text

DONE = b"data: [DONE]\n\n"
_ids = itertools.count(1)


@dataclass(frozen=True)
class Envelope:
    id: str
    object: str
    created: int
    model: str

    def head(self, **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "object": self.object, "created": self.created, "model": self.model, **extra}


def envelope(prefix: str, kind: str, model: str) -> Envelope:
    return Envelope(f"{prefix}-sim{next(_ids):08d}", kind, int(time.time()), model)


def usage(prompt_tokens: int, replies: Sequence[Reply]) -> dict[str, Any]:
    completion = sum(r.completion_tokens for r in replies)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": sum(r.reasoning_tokens for r in replies)},
    }


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _frames(env: Envelope, choices: list[list[dict[str, Any]]], tail: dict[str, Any] | None) -> list[bytes]:
    """Interleave the choices' chunks round-robin, as OpenAI does for n > 1."""
    extra: dict[str, Any] = {"system_fingerprint": "fp_sim"}
    if tail is not None:
        extra["usage"] = None
    prefix = b"data: " + orjson.dumps(env.head(**extra))[:-1] + b',"choices":['
    ordered = itertools.chain.from_iterable(itertools.zip_longest(*choices))
    frames = [prefix + orjson.dumps(c) + b"]}\n\n" for c in ordered if c is not None]
    if tail is not None:
        frames.append(_sse(env.head(system_fingerprint="fp_sim", choices=[], usage=tail)))
    frames.append(DONE)
    return frames


def chat_deltas(reply: Reply, chunking: Chunking) -> list[dict[str, Any]]:
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": "" if reply.content is not None else None}]
    deltas += [{reply.reasoning_field: p} for p in chunk_text(reply.reasoning, chunking)]
    deltas += [{"content": p} for p in chunk_text(reply.content or "", chunking)]
    call = reply.tool_call
    if call is not None:
        opening = {
            "index": 0,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        deltas.append({"tool_calls": [opening]})
        pieces = chunk_arguments(call.arguments, chunking)
        deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in pieces]
    return deltas


def chat_stream(
    env: Envelope, replies: Sequence[Reply], chunking: Chunking, usage_tail: dict[str, Any] | None
) -> list[bytes]:
    choices = []
    for index, reply in enumerate(replies):
        chunks: list[dict[str, Any]] = [
            {"index": index, "delta": d, "logprobs": None, "finish_reason": None} for d in chat_deltas(reply, chunking)
        ]
        chunks.append({"index": index, "delta": {}, "logprobs": None, "finish_reason": reply.finish_reason})
        choices.append(chunks)
    return _frames(env, choices, usage_tail)


def chat_body(env: Envelope, replies: Sequence[Reply], usage_: dict[str, Any]) -> bytes:
    choices = []
    for index, reply in enumerate(replies):
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
        if reply.reasoning:
            message[reply.reasoning_field] = reply.reasoning
        if reply.tool_call is not None:
            call = reply.tool_call
            function = {"name": call.name, "arguments": call.arguments}
            message["tool_calls"] = [{"id": call.id, "type": "function", "function": function}]
        choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": reply.finish_reason})
    return orjson.dumps(env.head(system_fingerprint="fp_sim", choices=choices, usage=usage_))


def completion_stream(
    env: Envelope, replies: Sequence[Reply], chunking: Chunking, usage_tail: dict[str, Any] | None
) -> list[bytes]:
    choices = []
    for index, reply in enumerate(replies):
        pieces = chunk_text(reply.content or "", chunking)
        chunks: list[dict[str, Any]] = [
            {"text": p, "index": index, "logprobs": None, "finish_reason": None} for p in pieces
        ]
        chunks.append({"text": "", "index": index, "logprobs": None, "finish_reason": reply.finish_reason})
        choices.append(chunks)
    return _frames(env, choices, usage_tail)


def completion_body(env: Envelope, replies: Sequence[Reply], usage_: dict[str, Any]) -> bytes:
    choices = [
        {"text": r.content or "", "index": i, "logprobs": None, "finish_reason": r.finish_reason}
        for i, r in enumerate(replies)
    ]
    return orjson.dumps(env.head(system_fingerprint="fp_sim", choices=choices, usage=usage_))
