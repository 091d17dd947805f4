"""The OpenAI-compatible routes: models, chat and legacy completions, embeddings."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from gateway.simulator.embeddings import as_base64, embed, input_texts
from gateway.simulator.events import (
    chat_body,
    completion_body,
    completion_stream,
    envelope,
    usage,
)
from gateway.simulator.replies import Prompt, compose
from gateway.simulator.responses import invalid_request, json_response, respond
from gateway.simulator.schema import ChatRequest, CompletionRequest, EmbeddingRequest, Shape
from gateway.simulator.shapes import shaped_chat_stream
from gateway.simulator.state import RecordedRequest, SimState
from gateway.simulator.streaming import Delivery, WatchedResponse
from gateway.simulator.text import count_tokens

MODELS = ("sim-chat", "sim-reason", "sim-think", "sim-tokens-200", "sim-embed")


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "warden-simulator"}


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


class OpenAIEndpoints:
    def __init__(self, state: SimState, shape: Shape = "openai") -> None:
        self.state = state
        self.shape = shape

    async def models(self, request: Request) -> Response:
        return json_response({"object": "list", "data": [_model_card(m) for m in MODELS]})

    async def model(self, request: Request) -> Response:
        return json_response(_model_card(request.path_params["model"]))

    async def chat(self, request: Request) -> Response | WatchedResponse:
        try:
            req = ChatRequest.model_validate(await self._receive(request))
        except ValidationError as exc:
            return invalid_request(exc)
        users = [m for m in req.messages if m.role == "user"]
        last_user = users[-1].text if users else ""
        prompt = Prompt(
            model=req.model,
            last_user=last_user,
            ends_with_user=bool(req.messages) and req.messages[-1].role == "user",
            tools=req.tools,
            tool_choice=req.tool_choice,
            response_format=req.response_format,
            stop=_stops(req.stop),
            max_tokens=req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens,
        )
        script = self.state.scripts.take(last_user, req.model)
        replies = [compose(prompt, script)] * req.n
        counted = usage(sum(count_tokens(m.text) for m in req.messages), replies)
        chunking = script.chunking if script else "word"
        if req.stream:
            env = envelope("chatcmpl", "chat.completion.chunk", req.model)
            tail = counted if req.stream_options and req.stream_options.include_usage else None
            shape = script.shape if script and script.shape else self.shape
            frames = shaped_chat_stream(shape, env, replies, chunking, tail, counted)
        else:
            frames = [chat_body(envelope("chatcmpl", "chat.completion", req.model), replies, counted)]
        return respond(frames, Delivery.of(script), self.state.stats, stream=req.stream)

    async def completions(self, request: Request) -> Response | WatchedResponse:
        try:
            req = CompletionRequest.model_validate(await self._receive(request))
        except ValidationError as exc:
            return invalid_request(exc)
        texts = input_texts(req.prompt)
        script = self.state.scripts.take("\n".join(texts), req.model)
        replies = []
        for text in texts:
            prompt = Prompt(model=req.model, last_user=text, stop=_stops(req.stop), max_tokens=req.max_tokens)
            # Legacy completions have no reasoning field; only inline <think> survives.
            replies += [dataclasses.replace(compose(prompt, script), reasoning="")] * req.n
        counted = usage(sum(count_tokens(t) for t in texts), replies)
        chunking = script.chunking if script else "word"
        env = envelope("cmpl", "text_completion", req.model)
        if req.stream:
            tail = counted if req.stream_options and req.stream_options.include_usage else None
            frames = completion_stream(env, replies, chunking, tail)
        else:
            frames = [completion_body(env, replies, counted)]
        return respond(frames, Delivery.of(script), self.state.stats, stream=req.stream)

    async def embeddings(self, request: Request) -> Response | WatchedResponse:
        try:
            req = EmbeddingRequest.model_validate(await self._receive(request))
        except ValidationError as exc:
            return invalid_request(exc)
        texts = input_texts(req.input)
        script = self.state.scripts.take("\n".join(texts), req.model)
        data = []
        for index, text in enumerate(texts):
            vector = embed(text, req.dimensions)
            encoded: list[float] | str = as_base64(vector) if req.encoding_format == "base64" else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(count_tokens(t) for t in texts)
        body = {
            "object": "list",
            "data": data,
            "model": req.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return respond([orjson.dumps(body)], Delivery.of(script), self.state.stats, stream=False)

    async def _receive(self, request: Request) -> Any:
        """The JSON body, recorded first so tests can see even bodies the simulator rejects."""
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        recorded = body if isinstance(body, dict) else {"_raw": raw.decode(errors="replace")}
        self.state.record(RecordedRequest(request.url.path, dict(request.headers), recorded))
        return body
