"""Direct forwarding to OpenAI-compatible upstreams, parsing SSE itself.

litellm's stream wrapper costs about 0.4 ms per chunk; this path costs a few µs per chunk
and, under load, hands on everything one socket read brought in as one batch (see
``gateway.upstream.transport``). It serves deployments that speak the OpenAI API
(``openai/...`` with an ``api_base``); everything else goes through litellm. A call is
retried (``num_retries`` times, short backoff) only when nothing of an answer was received
or relayed and the failure is a connection failure, a 429 or a 5xx; never after a read
timeout (the upstream has the request and may be working on it) and never once a byte went
to the client. ``read_timeout_s`` bounds the wait for the first byte, then for each next one.

Redirects are never followed: an upstream that answers 3xx is an error (logged once per
upstream and target), so a compromised or misconfigured upstream cannot send the gateway,
with its API key, somewhere else.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from gateway.config import Deployment, UpstreamSettings, env_value
from gateway.errors import UpstreamError, UpstreamStatus, UpstreamTimeout
from gateway.upstream.base import Endpoint
from gateway.upstream.sse import SseBatcher
from gateway.upstream.transport import (
    ConnectFailed,
    ConnectTimeout,
    Http1Error,
    Http2Refused,
    PoolBusy,
    ReadTimeout,
    Transports,
    UpstreamResponse,
)

FAST_PREFIXES = ("openai/",)
log = logging.getLogger("warden.upstream")
#: (kind, upstream, ...) keys already logged, e.g. a redirect and its target
_logged: set[tuple[str, ...]] = set()


def is_fast(deployment: Deployment) -> bool:
    params = deployment.litellm_params
    return params.model.startswith(FAST_PREFIXES) and bool(params.api_base)


class FastUpstream:
    route = "fast"

    def __init__(self, deployments: list[Deployment], settings: UpstreamSettings, transports: Transports) -> None:
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
        self._transports = transports

    async def _send(self, endpoint: Endpoint, body: dict[str, Any], *, stream: bool) -> UpstreamResponse:
        base, model, key, timeout = self._targets[next(self._cycle)]
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        s = self._settings
        total = timeout or s.timeout_s
        content = orjson.dumps({**body, "model": model})
        attempts = s.num_retries + 1
        for attempt in range(attempts):
            last = attempt + 1 == attempts
            try:
                response = await self._transports.post(
                    f"{base}/{endpoint}",
                    base_url=base,
                    headers=headers,
                    body=content,
                    connect_timeout=min(total, s.connect_timeout_s),
                    read_timeout=min(total, s.read_timeout_s),
                    accept_encoding="identity" if stream else "gzip",
                )
            except Http2Refused as exc:
                _log_once(("http2", base), "upstream %s speaks only HTTP/2: %s; set upstream.http2: true", base, exc)
                raise UpstreamError(
                    "Upstream speaks only HTTP/2; the fast path speaks HTTP/1.1 unless `upstream.http2: true` is set."
                ) from exc
            # Before ConnectTimeout, its base class: a full pool is not a connection failure to retry.
            except PoolBusy as exc:
                log.warning("upstream %s: %s", base, exc)
                raise UpstreamTimeout(
                    "Upstream timed out waiting for a free connection (upstream.max_connections_per_origin)."
                ) from exc
            except (ConnectFailed, ConnectTimeout) as exc:
                if not last:
                    await asyncio.sleep(_backoff(attempt))
                    continue
                if isinstance(exc, ConnectTimeout):
                    raise UpstreamTimeout("Upstream timed out while connecting.") from exc
                raise UpstreamError("Upstream unreachable: ConnectError") from exc
            except ReadTimeout as exc:  # never retried: the upstream has the request
                raise UpstreamTimeout(f"Upstream sent nothing within {min(total, s.read_timeout_s):g} s.") from exc
            except Http1Error as exc:
                raise UpstreamError(f"Upstream request failed: {exc}") from exc
            if 300 <= response.status_code < 400:
                location = response.header(b"location") or "(no location)"
                await response.aclose()
                _log_once(
                    ("redirect", base, location),
                    "upstream %s answered HTTP %d redirecting to %s; redirects are not followed, its requests fail",
                    base,
                    response.status_code,
                    location[:300],
                )
                raise UpstreamError(
                    f"Upstream answered with a redirect (HTTP {response.status_code}); redirects are not followed."
                )
            if response.status_code >= 400:
                try:
                    detail = (await response.aread())[:2000].decode("utf-8", "replace")
                except Http1Error:
                    detail = ""
                finally:
                    await response.aclose()
                if not last and (response.status_code == 429 or response.status_code >= 500):
                    await asyncio.sleep(_backoff(attempt))
                    continue  # nothing of this answer reached the client yet
                raise UpstreamStatus(_message(detail, response.status_code), response.status_code)
            return response
        raise AssertionError("unreachable")

    async def call(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._send(endpoint, body, stream=False)
        try:
            raw = await response.aread()
        except ReadTimeout as exc:
            raise UpstreamTimeout("Upstream timed out.") from exc
        except Http1Error as exc:
            raise UpstreamError(f"Upstream connection lost: {exc}") from exc
        finally:
            await response.aclose()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("Upstream returned malformed JSON.") from exc
        if not isinstance(data, dict):
            raise UpstreamError("Upstream returned an unexpected response.")
        return data

    async def stream(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncGenerator[list[dict[str, Any]], None]:
        response = await self._send(endpoint, body, stream=True)
        events = SseBatcher()
        alone = True
        try:
            async for data in response.aiter_reads():
                # Up to the stream's first text, chunks one at a time: the first words are
                # checked and sent before the rest of the read is looked at (they do not wait
                # for a whole read). After that, a read's chunks leave together, in one write.
                batch: list[dict[str, Any]] = []
                for chunk in events.feed(data):
                    if alone:
                        alone = not _has_text(chunk)
                        yield [chunk]
                    else:
                        batch.append(chunk)
                if batch:
                    yield batch
                if events.error is not None:
                    raise events.error  # after what came before the bad event went out
                if events.done:
                    response.release_when_done()
                    return
        except ReadTimeout as exc:
            raise UpstreamTimeout("Upstream stalled mid-stream.") from exc
        except Http1Error as exc:
            raise UpstreamError(f"Upstream connection lost mid-stream: {exc}") from exc
        finally:
            await response.aclose()
        raise UpstreamError("Upstream stream ended without [DONE].")

    async def aclose(self) -> None:
        return None


def _has_text(chunk: dict[str, Any]) -> bool:
    """Whether a stream chunk carries words for the client (text, reasoning, tool arguments)."""
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if choice.get("text"):
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(
            delta.get(k) for k in ("content", "reasoning_content", "reasoning", "tool_calls")
        ):
            return True
    return False


def _log_once(key: tuple[str, ...], message: str, *args: object) -> None:
    """A misbehaving upstream is logged once per kind and target, not once per request."""
    if key in _logged or len(_logged) > 1000:
        return
    _logged.add(key)
    log.warning(message, *args)


def _backoff(attempt: int) -> float:
    return float(min(0.1 * 2**attempt, 1.0))


def _message(detail: str, status: int) -> str:
    try:
        parsed = orjson.loads(detail)
        message = parsed["error"]["message"]
        if isinstance(message, str):
            return f"Upstream error ({status}): {message}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    return f"Upstream error ({status})."
