"""The one module that imports litellm: a ``Router`` over the config's ``model_list``.

litellm serves every provider it knows (Anthropic, Bedrock, Vertex, Azure, Ollama, ...)
with fallbacks, retries and timeouts as configured. Importing it costs seconds and
~190 MB, so it is imported on first use or warmed in the background (see ``warm``).
Its remote cost-map fetch is switched off before the import: nothing leaves the machine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncGenerator
from typing import Any

from gateway.config import Deployment, UpstreamSettings
from gateway.errors import UpstreamError, UpstreamStatus, UpstreamTimeout, WardenError
from gateway.upstream.base import Endpoint

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_TELEMETRY", "False")

_lock = threading.Lock()


def _import_litellm() -> Any:
    with _lock:
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        return litellm


def warm() -> None:
    """Import litellm off the request path (called from a background thread at start)."""
    _import_litellm()


def map_error(exc: BaseException) -> WardenError:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return UpstreamTimeout("Upstream timed out.")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamError(f"Upstream unreachable: {type(exc).__name__}")
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 400:
        message = getattr(exc, "message", None) or str(exc)
        return UpstreamStatus(f"Upstream error ({status}): {message[:500]}", status)
    return UpstreamError(f"Upstream call failed: {type(exc).__name__}")


class LiteLLMUpstream:
    route = "litellm"

    def __init__(self, deployments: list[Deployment], settings: UpstreamSettings) -> None:
        self._deployments = [d.model_dump(exclude_none=True) for d in deployments]
        self._settings = settings
        self._router: Any = None

    def _get_router(self) -> Any:
        if self._router is None:
            litellm = _import_litellm()
            s = self._settings
            from litellm.types.router import RetryPolicy

            self._router = litellm.Router(
                model_list=self._deployments,
                num_retries=s.num_retries,
                timeout=s.timeout_s,
                stream_timeout=min(s.timeout_s, s.read_timeout_s),
                fallbacks=s.fallbacks or None,
                # as on the fast path: a timed-out call is never sent again
                retry_policy=RetryPolicy(TimeoutErrorRetries=0, BadRequestErrorRetries=0, AuthenticationErrorRetries=0),
            )
        return self._router

    async def _invoke(self, endpoint: Endpoint, body: dict[str, Any], stream: bool) -> Any:
        router = self._get_router()
        params = dict(body)
        model = params.pop("model")
        params.pop("stream", None)  # given explicitly below
        try:
            if endpoint == "chat/completions":
                return await router.acompletion(model=model, stream=stream, **params)
            if endpoint == "completions":
                return await router.atext_completion(model=model, stream=stream, **params)
            return await router.aembedding(model=model, **params)
        except WardenError:
            raise
        except Exception as exc:
            raise map_error(exc) from exc

    async def call(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._invoke(endpoint, body, stream=False)
        return _to_dict(response)

    async def stream(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncGenerator[list[dict[str, Any]], None]:
        wrapper = await self._invoke(endpoint, body, stream=True)
        try:
            async for chunk in wrapper:
                yield [_to_dict(chunk)]
        except WardenError:
            raise
        except Exception as exc:
            raise map_error(exc) from exc
        finally:
            close = getattr(wrapper, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:  # noqa: S110 - closing a broken upstream stream must not mask the error
                    pass

    async def aclose(self) -> None:
        return None


def _to_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    dumped = obj.model_dump(exclude_none=False) if hasattr(obj, "model_dump") else dict(obj)
    # litellm adds private bookkeeping fields that clients must not see
    return {k: v for k, v in dumped.items() if not k.startswith("_")}
