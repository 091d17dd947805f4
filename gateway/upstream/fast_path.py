"""Direct forwarding to OpenAI-compatible upstreams with one pooled httpx client.

litellm's stream wrapper costs about 0.4 ms per chunk, raw httpx forwarding about
0.035 ms (see benchmarks/); for deployments that speak the OpenAI API (``openai/...``
with an ``api_base``) this path parses SSE itself. Everything else goes through litellm.
Connection failures before any byte is received are retried ``num_retries`` times;
nothing is retried once the upstream has started answering.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import orjson

from gateway.config import Deployment, UpstreamSettings, env_value
from gateway.errors import UpstreamError, UpstreamStatus, UpstreamTimeout
from gateway.upstream.base import Endpoint

FAST_PREFIXES = ("openai/",)


def is_fast(deployment: Deployment) -> bool:
    params = deployment.litellm_params
    return params.model.startswith(FAST_PREFIXES) and bool(params.api_base)


class FastUpstream:
    route = "fast"

    def __init__(self, deployments: list[Deployment], settings: UpstreamSettings, client: httpx.AsyncClient) -> None:
        self._targets = [
            (
                (d.litellm_params.api_base or "").rstrip("/"),
                d.litellm_params.model.split("/", 1)[1],
                env_value(d.litellm_params.api_key),
                d.litellm_params.timeout,
            )
            for d in deployments
        ]
        self._cycle = itertools.cycle(range(len(self._targets)))
        self._settings = settings
        self._client = client

    def _request(self, endpoint: Endpoint, body: dict[str, Any]) -> httpx.Request:
        base, model, key, timeout = self._targets[next(self._cycle)]
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        s = self._settings
        total = timeout or s.timeout_s
        return self._client.build_request(
            "POST",
            f"{base}/{endpoint}",
            content=orjson.dumps({**body, "model": model}),
            headers=headers,
            timeout=httpx.Timeout(total, connect=s.connect_timeout_s, read=min(total, s.read_timeout_s)),
        )

    async def _send(self, endpoint: Endpoint, body: dict[str, Any], stream: bool) -> httpx.Response:
        attempts = self._settings.num_retries + 1
        for attempt in range(attempts):
            try:
                response = await self._client.send(self._request(endpoint, body), stream=stream)
            except httpx.ConnectError as exc:
                if attempt + 1 < attempts:
                    continue
                raise UpstreamError(f"Upstream unreachable: {type(exc).__name__}") from exc
            except httpx.TimeoutException as exc:
                raise UpstreamTimeout("Upstream timed out.") from exc
            except httpx.HTTPError as exc:
                raise UpstreamError(f"Upstream request failed: {type(exc).__name__}") from exc
            if response.status_code >= 400:
                try:
                    detail = (await response.aread())[:2000].decode("utf-8", "replace")
                finally:
                    await response.aclose()
                raise UpstreamStatus(_message(detail, response.status_code), response.status_code)
            return response
        raise AssertionError("unreachable")

    async def call(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._send(endpoint, body, stream=False)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("Upstream returned malformed JSON.") from exc
        if not isinstance(data, dict):
            raise UpstreamError("Upstream returned an unexpected response.")
        return data

    async def stream(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncGenerator[list[dict[str, Any]], None]:
        response = await self._send(endpoint, body, stream=True)
        buf = b""
        try:
            async for data in response.aiter_raw():
                buf += data
                batch: list[dict[str, Any]] = []
                done = False
                while not done:
                    cut = buf.find(b"\n\n")
                    if cut < 0:
                        break
                    event, buf = buf[:cut], buf[cut + 2 :]
                    chunk = _parse_event(event)
                    if chunk is _DONE:
                        done = True
                    elif chunk is not None:
                        batch.append(chunk)
                if batch:
                    yield batch
                if done:
                    return
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("Upstream stalled mid-stream.") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"Upstream connection lost mid-stream: {type(exc).__name__}") from exc
        finally:
            await response.aclose()
        raise UpstreamError("Upstream stream ended without [DONE].")

    async def aclose(self) -> None:
        return None


_DONE: dict[str, Any] = {}


def _parse_event(event: bytes) -> dict[str, Any] | None:
    payload = b""
    for line in event.replace(b"\r\n", b"\n").split(b"\n"):
        if line.startswith(b"data:"):
            payload += line[5:].strip()
    if not payload:
        return None
    if payload == b"[DONE]":
        return _DONE
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("Upstream sent a malformed stream chunk.") from exc
    if not isinstance(chunk, dict):
        raise UpstreamError("Upstream sent a malformed stream chunk.")
    if "error" in chunk and "choices" not in chunk:
        message = chunk["error"].get("message") if isinstance(chunk["error"], dict) else str(chunk["error"])
        raise UpstreamError(f"Upstream error mid-stream: {message}")
    return chunk


def _message(detail: str, status: int) -> str:
    try:
        parsed = orjson.loads(detail)
        message = parsed["error"]["message"]
        if isinstance(message, str):
            return f"Upstream error ({status}): {message}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    return f"Upstream error ({status})."
