"""The request flows of the three model endpoints, from parsed body to response.

Each flow: validate -> strip routing fields -> input stage (+ preamble) -> upstream ->
``ResponseGuard`` -> audit record. Streams start the upstream call and wait for its first
chunk *before* the HTTP response begins, so an upstream that is down or times out is a
proper 502/504; after the first byte an error becomes a final ``data: {"error"}`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from audit.record import Stage, Status, Verdict
from gateway.api_models import (
    DEFAULT_LIMITS,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    RequestLimits,
    strip_routing,
)
from gateway.errors import BadRequest, PolicyBlocked, UpstreamError, WardenError, http_status
from gateway.pipeline.response import Kind, ResponseGuard
from gateway.pipeline.segments import Segments, chat_segments, prompt_segments
from gateway.pipeline.session import GuardSession
from gateway.upstream.base import Endpoint, Upstream

DONE = b"data: [DONE]\n\n"
#: the chunks of one network read: they leave together, in one write
Batch = list[dict[str, Any]]


class Tail(Batch):
    """The last batch of a stream (held endings, usage): nothing but ``[DONE]`` follows it, so
    the relay sends the two in one write."""


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


@dataclass(slots=True)
class Streamed:
    """A response that is a stream of SSE bytes (the flow has already started it)."""

    body: AsyncIterator[bytes]


Result = dict[str, Any] | Streamed


def validate(model: type[BaseModel], body: dict[str, Any], limits: RequestLimits | None = None) -> None:
    """Refuse a body the upstream must not see: 400 naming the first wrong field."""
    try:
        model.model_validate(body, context={"limits": limits or DEFAULT_LIMITS})
    except ValidationError as exc:
        # Of the errors a union gives (one per type tried), the one that reached deepest
        # into the value names the field best: messages[0].content[1].text, not .content.
        found = [(field_path(body, e["loc"], missing=e["type"] == "missing"), e) for e in exc.errors()]
        path, err = max(found, key=lambda f: len(f[0]))
        param = path or str((err.get("ctx") or {}).get("field") or "") or None
        raise BadRequest(f"Invalid request: '{param or 'body'}': {err['msg']}", param=param) from None


def field_path(body: Any, loc: tuple[int | str, ...], *, missing: bool = False) -> str:
    """``messages[2].content`` from pydantic's location, without its union-member tags
    (which name a type the value was tried as, not a field of the request)."""
    path, current, last = "", body, len(loc) - 1
    for i, part in enumerate(loc):
        if isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path, current = f"{path}[{part}]", current[part]
        elif isinstance(current, dict) and isinstance(part, str) and (part in current or (missing and i == last)):
            path, current = f"{path}.{part}" if path else part, current.get(part)
        # anything else is a union member's tag ("str", "list[...]", "ContentPart"): skipped
    return path


async def run_flow(
    session: GuardSession,
    upstream: Upstream,
    endpoint: Endpoint,
    body: dict[str, Any],
    finish: Any,
    limits: RequestLimits | None = None,
) -> Result:
    """Run one request. ``finish(record)`` is called exactly once with the audit record."""
    kind: Kind = "chat" if endpoint == "chat/completions" else "completion"
    try:
        segments = _segments(endpoint, body, limits)
        dropped = strip_routing(body)
        if dropped:
            session.add_step(Stage.input, "routing_fields", Verdict.passed, detail={"dropped": dropped})
        messages = body.get("messages") if endpoint == "chat/completions" else None
        decision = await session.check_input(segments, constrain=messages)
        if decision.refusal is not None:
            finish(session.finish(Status.blocked, 200))
            return _refusal(session, body, kind, decision.refusal)
        if endpoint == "embeddings":
            return await _embeddings(session, upstream, body, finish)
        fmt = body.get("response_format")
        guard = ResponseGuard(session, kind, response_format=fmt if isinstance(fmt, dict) else None)
        if body.get("stream"):
            return await _start_stream(session, guard, upstream, endpoint, body, finish)
        response = await _call(session, upstream, endpoint, body)
        result = await guard.process_response(response)
        finish(session.finish(http_status=200))
        return result
    except WardenError as exc:
        status = Status.blocked if isinstance(exc, PolicyBlocked) else None
        if isinstance(exc, UpstreamError):
            status = Status.upstream_error
        finish(session.finish(status or Status.error, http_status(exc), exc.message))
        raise
    except BaseException as exc:
        finish(session.finish(Status.error, 500, f"{type(exc).__name__}: {exc}"))
        raise


def _segments(endpoint: Endpoint, body: dict[str, Any], limits: RequestLimits | None) -> Segments:
    if endpoint == "chat/completions":
        validate(ChatRequest, body, limits)
        return chat_segments(body)
    if endpoint == "completions":
        validate(CompletionRequest, body, limits)
        return prompt_segments(body, "prompt")
    validate(EmbeddingRequest, body, limits)
    return prompt_segments(body, "input")


async def _call(session: GuardSession, upstream: Upstream, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        response = await upstream.call(endpoint, body)
    except WardenError as exc:
        upstream_step(session, upstream.route, started, error=exc.message)
        raise
    upstream_step(session, upstream.route, started, model=response.get("model"))
    return response


async def _embeddings(session: GuardSession, upstream: Upstream, body: dict[str, Any], finish: Any) -> Result:
    response = await _call(session, upstream, "embeddings", body)
    session.record.model_served = response.get("model")
    usage = response.get("usage") or {}
    session.record.prompt_tokens = usage.get("prompt_tokens")
    finish(session.finish(http_status=200))
    return response


def upstream_step(
    session: GuardSession,
    route: str,
    started: float,
    *,
    model: Any = None,
    error: str | None = None,
    first_chunk_ms: float | None = None,
) -> None:
    """The audit step of the upstream call (the gateway's own route or LiteLLM Proxy's)."""
    detail: dict[str, Any] = {"route": route}
    if model:
        detail["model"] = model
    if first_chunk_ms is not None:
        detail["first_chunk_ms"] = round(first_chunk_ms, 3)
    if error:
        detail["error"] = error[:500]
    session.add_step(
        Stage.upstream,
        "upstream",
        Verdict.error if error else Verdict.passed,
        latency_ms=(time.perf_counter() - started) * 1000,
        detail=detail,
    )


def error_status(exc: BaseException) -> int:
    if isinstance(exc, WardenError):
        return http_status(exc)
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) and status >= 400 else 502


async def guarded_chunks(
    session: GuardSession,
    guard: ResponseGuard,
    chunks: AsyncIterator[Batch],
    *,
    route: str,
    started: float,
    finish: Any,
    first: Batch | None = None,
) -> AsyncGenerator[Batch, None]:
    """Upstream chunks in, guarded chunks out; records the upstream step and closes the
    session exactly once however the stream ends (done, blocked, failed, client gone).

    Chunks travel in batches, and a batch goes out in one write. The fast path's batches
    are single chunks that each carry a run of tokens (``gateway.upstream.sse``).

    An upstream failure is re-raised after it is recorded: the caller decides how the
    client hears of it. Held-back text is then dropped, not flushed: it may be the start
    of a value to redact.
    """
    status, code, error = Status.ok, 200, None
    first_ms: float | None = None
    try:
        pending = [first] if first is not None else []
        while not guard.stopped:
            if pending:
                batch = pending.pop()
            else:
                try:
                    batch = await anext(chunks)
                except StopAsyncIteration:
                    break
            if first_ms is None:
                first_ms = (time.perf_counter() - started) * 1000
            out: Batch = []
            for chunk in batch:
                out += await guard.process_chunk(chunk)
                if guard.stopped:
                    break
            if out:
                yield out
        upstream_step(session, route, started, model=session.record.model_served, first_chunk_ms=first_ms)
        if not guard.stopped:
            tail = await guard.finish()
            if tail:
                yield Tail(tail)
    except (asyncio.CancelledError, GeneratorExit):
        status, code, error = Status.client_aborted, 499, "client disconnected"
        guard.record_stream_hits()
        raise
    except Exception as exc:
        message = exc.message if isinstance(exc, WardenError) else f"{type(exc).__name__}: {exc}"
        upstream_step(session, route, started, error=message, first_chunk_ms=first_ms)
        status, code, error = Status.upstream_error, error_status(exc), message
        guard.record_stream_hits()
        raise
    finally:
        try:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await asyncio.shield(_quiet_close(aclose))
        finally:
            # Even when the wait above is cancelled: a client that hangs up right after the
            # last chunk makes the server cancel this task while it closes the upstream, and
            # the record must not be lost with it (seen under load in the fuzz test).
            finish(session.finish(status, code, error))


async def _start_stream(
    session: GuardSession,
    guard: ResponseGuard,
    upstream: Upstream,
    endpoint: Endpoint,
    body: dict[str, Any],
    finish: Any,
) -> Streamed:
    started = time.perf_counter()
    chunks = upstream.stream(endpoint, body)
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = None
    except WardenError as exc:
        upstream_step(session, upstream.route, started, error=exc.message)
        raise
    except BaseException:
        await chunks.aclose()
        raise
    guarded = guarded_chunks(session, guard, chunks, route=upstream.route, started=started, finish=finish, first=first)
    return Streamed(_relay(session, guarded))


async def _relay(session: GuardSession, guarded: AsyncGenerator[Batch, None]) -> AsyncIterator[bytes]:
    """SSE bytes, a batch per write; the stream's tail and ``[DONE]`` in one (the generator
    finishes the record between the two, so ``[DONE]`` still comes after it)."""
    tail = b""
    async with contextlib.aclosing(guarded):
        try:
            async for batch in guarded:
                data = b"".join(sse(out) for out in batch)
                if isinstance(batch, Tail):
                    tail = data
                else:
                    yield data
        except WardenError as exc:
            yield tail + sse(exc.to_body(session.record.request_id))
            return
    yield tail + DONE


async def _quiet_close(aclose: Any) -> None:
    try:
        await aclose()
    except (Exception, asyncio.CancelledError):  # noqa: S110 - the upstream is being abandoned anyway
        pass


def _refusal(session: GuardSession, body: dict[str, Any], kind: Kind, exc: PolicyBlocked) -> Result:
    """``on_block: refusal``: a normal-looking answer carrying the policy's refusal text."""
    text = session.policy.policy.refusal_text
    base = {
        "id": "chatcmpl-" + session.record.request_id.removeprefix("req_"),
        "created": int(time.time()),
        "model": body.get("model"),
    }
    session.record.finish_reason = "content_filter"
    session.record.output_text = text
    if kind == "completion":
        choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None, "finish_reason": "content_filter"}
        obj = "text_completion"
    else:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
        obj = "chat.completion"
    if not body.get("stream"):
        return {
            **base,
            "object": obj,
            "choices": [choice],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }

    async def gen() -> AsyncIterator[bytes]:
        if kind == "chat":
            delta = {"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": "content_filter"}
            yield sse({**base, "object": "chat.completion.chunk", "choices": [delta]})
        else:
            yield sse({**base, "object": "text_completion", "choices": [choice]})
        yield DONE

    return Streamed(gen())
