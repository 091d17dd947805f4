"""Turning prepared frames into a response: plain, erroring, paced, faulty or hanging."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.responses import Response

from gateway.simulator.state import Outcome, Stats
from gateway.simulator.streaming import Delivery, WatchedResponse, paced

SSE_MEDIA = "text/event-stream; charset=utf-8"
JSON_MEDIA = "application/json"
# A retry hint clients honour (openai, litellm) that keeps retrying tests fast.
_RETRY_HEADERS = {"retry-after-ms": "50", "retry-after": "1"}


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type=JSON_MEDIA)


def error(status: int, message: str, kind: str, code: str | None, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Response(orjson.dumps(body), status, headers, media_type=JSON_MEDIA)


def invalid_request(exc: ValidationError | str) -> Response:
    message = (
        exc if isinstance(exc, str) else "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    )
    return error(400, message, "invalid_request_error", None)


def respond(frames: Sequence[bytes], delivery: Delivery, stats: Stats, *, stream: bool) -> Response | WatchedResponse:
    """Send `frames` as SSE (stream) or as one JSON body, as `delivery` says, counting the outcome."""
    ticket = stats.begin(stream=stream)
    if delivery.fault == "refuse_500":
        stats.end(ticket, Outcome.FAILED)
        return error(500, "The server had an error while processing your request.", "server_error", None)
    if delivery.fault == "status_429":
        stats.end(ticket, Outcome.FAILED)
        message = "Rate limit reached (simulated)."
        return error(429, message, "requests", "rate_limit_exceeded", _RETRY_HEADERS)
    if not stream and delivery.fault is None and not delivery.delay_s:
        stats.end(ticket, Outcome.COMPLETED)
        return Response(frames[0], media_type=JSON_MEDIA)
    if not stream:
        # Two halves, so a mid-body fault leaves the client holding half a JSON document.
        body = frames[0]
        frames = [body[: len(body) // 2], body[len(body) // 2 :]]
    return WatchedResponse(
        paced(frames, delivery, delay_each=stream),
        stats=stats,
        ticket=ticket,
        media_type=SSE_MEDIA if stream else JSON_MEDIA,
        hang_first=delivery.fault == "hang",
    )
