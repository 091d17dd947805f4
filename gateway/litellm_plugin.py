"""Warden as a LiteLLM Proxy guardrail: the gateway's pipeline behind LiteLLM's hooks.

In a LiteLLM Proxy ``config.yaml``::

    guardrails:
      - guardrail_name: warden
        litellm_params:
          guardrail: gateway.litellm_plugin.WardenGuardrail
          mode: [pre_call, post_call]
          default_on: true
          warden_config: /etc/warden/warden.yaml

This module only translates. LiteLLM's request dict is already OpenAI-shaped, so the input
stage runs on it in place (``GuardSession.check_input``: redaction and the safety preamble
land in ``data["messages"]``); LiteLLM's ``ModelResponse`` / ``ModelResponseStream`` objects
are dumped to the OpenAI dicts ``ResponseGuard`` takes, and its output is written back. The
policies, checks, hold-back window, audit records and hot reload are the gateway's own
(``gateway.service.Gateway``), so both front doors decide and record alike.

Which Warden principal (tenant, policy, key id) a request runs as: the warden config key
whose ``id`` is named by ``warden_key_id`` in the LiteLLM virtual key's (or its team's)
admin-set metadata, else the guardrail's ``warden_key_id`` param, else the first ``client``
key of the warden config. Request bodies cannot choose it.

Per-request state (the open ``GuardSession``) lives in a table keyed by a server-made
request id, which the pre-call hook writes into the request's metadata, because LiteLLM
hands later hooks the request dict and nothing else of ours. Every path out removes the
entry: success, stream end, failure hook, or (if LiteLLM never calls back) age.
"""

from __future__ import annotations

import atexit
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from fastapi import HTTPException
from litellm.integrations.custom_guardrail import CustomGuardrail
from litellm.proxy._types import ProxyException
from litellm.types.guardrails import GuardrailEventHooks
from litellm.types.utils import ModelResponse, ModelResponseStream
from pydantic import BaseModel

from audit.record import Status
from gateway.auth import KeyStore, Principal
from gateway.config import load_config
from gateway.errors import BadRequest, PolicyBlocked, WardenError, http_status
from gateway.pipeline.flow import guarded_chunks, upstream_step
from gateway.pipeline.response import ResponseGuard
from gateway.pipeline.segments import Segments, chat_segments, prompt_segments
from gateway.pipeline.session import GuardSession, new_request_id
from gateway.service import Gateway

REQUEST_ID_KEY: Final = "warden_request_id"
PRINCIPAL_KEY: Final = "warden_key_id"
ROUTE: Final = "litellm-proxy"
CHAT_CALLS: Final = frozenset({"completion", "acompletion"})
EMBEDDING_CALLS: Final = frozenset({"embeddings", "aembedding"})
HOOKS: Final = [GuardrailEventHooks.pre_call, GuardrailEventHooks.post_call]


class GuardrailStartError(RuntimeError):
    """The guardrail cannot run; raised from its constructor so LiteLLM does not start."""


@dataclass(slots=True)
class OpenRequest:
    session: GuardSession
    #: when the input stage handed the request back to LiteLLM (the upstream call starts)
    sent_at: float


class WardenProxyError(ProxyException):
    """A ``WardenError`` in the shape LiteLLM's proxy answers with: the gateway's status and
    headers, and its ``error`` object (``code: content_policy_violation`` for a block) with
    the ``warden`` details inside it."""

    def __init__(self, exc: WardenError, request_id: str | None) -> None:
        self.body = exc.to_body(request_id or "")
        headers = exc.headers()
        if request_id:
            headers["x-warden-request-id"] = request_id
        super().__init__(message=exc.message, type=exc.type, param=exc.param, code=http_status(exc), headers=headers)

    def to_dict(self) -> dict[str, Any]:
        error = dict(self.body["error"])
        if "warden" in self.body:
            error["warden"] = self.body["warden"]
        return error


class WardenGuardrail(CustomGuardrail):
    #: a request LiteLLM never called back for is closed (and audited) after this long
    max_open_s: float = 3600.0

    def __init__(self, warden_config: str | None = None, warden_key_id: str | None = None, **kwargs: Any) -> None:
        # LiteLLM starts the proxy *without* a guardrail whose constructor raises ValueError or
        # TypeError; any other error stops the start. An unguarded proxy must not come up.
        try:
            kwargs.setdefault("event_hook", [h.value for h in HOOKS])
            super().__init__(supported_event_hooks=HOOKS, **kwargs)
            if not all(self._event_hook_is_event_type(h) for h in HOOKS):
                raise ValueError("the warden guardrail needs mode: [pre_call, post_call]")
            config = load_config(warden_config)
            self.gateway = Gateway(config, with_upstreams=False)
            self.default_principal = _default_principal(self.gateway.keys, warden_key_id)
            self.gateway.start()
        except Exception as exc:
            raise GuardrailStartError(f"Warden guardrail could not start: {type(exc).__name__}: {exc}") from exc
        self._open: OrderedDict[str, OpenRequest] = OrderedDict()
        atexit.register(self.close)

    def close(self) -> None:
        """Record requests still open, write out queued audit records, stop watching policies
        (at process exit)."""
        while self._open:
            _, request = self._open.popitem(last=False)
            self.gateway.finish(request.session.finish(Status.error, 503, "the proxy stopped during the request"))
        self.gateway.policies.stop()
        self.gateway.audit.close()

    # -- before the call -----------------------------------------------------------------

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> dict[str, Any]:
        self._expire()
        if call_type in CHAT_CALLS:
            endpoint, segments = "/v1/chat/completions", chat_segments(data)
        elif call_type in EMBEDDING_CALLS:
            endpoint, segments = "/v1/embeddings", prompt_segments(data, "input")
        else:
            # Fail closed: a route whose answers Warden cannot check must not pass unseen.
            raise WardenProxyError(BadRequest(f"Warden does not guard LiteLLM '{call_type}' calls."), None)
        request_id = new_request_id()
        metadata = data.get("metadata")
        if not isinstance(metadata, dict):
            metadata = data["metadata"] = {}
        metadata[REQUEST_ID_KEY] = request_id
        session = self.gateway.open_session(
            self.principal_for(user_api_key_dict),
            request_id=request_id,
            endpoint=endpoint,
            model=str(data.get("model") or ""),
            stream=bool(data.get("stream")),
            client_addr=_client_addr(data),
        )
        await self._check_input(session, segments, data, chat=call_type in CHAT_CALLS)
        self._open[request_id] = OpenRequest(session, time.perf_counter())
        return data

    async def _check_input(
        self, session: GuardSession, segments: Segments, data: dict[str, Any], *, chat: bool
    ) -> None:
        try:
            decision = await session.check_input(segments, constrain=data.get("messages") if chat else None)
        except WardenError as exc:
            status = Status.blocked if isinstance(exc, PolicyBlocked) else Status.error
            self.gateway.finish(session.finish(status, http_status(exc), exc.message))
            raise WardenProxyError(exc, session.record.request_id) from None
        if decision.refusal is not None and not chat:
            self.gateway.finish(session.finish(Status.blocked, 400, decision.refusal.message))
            raise WardenProxyError(decision.refusal, session.record.request_id)
        if decision.refusal is not None:
            # on_block: refusal. LiteLLM answers a passthrough violation with HTTP 200, the
            # message as the reply and finish_reason "content_filter", streamed or not.
            text = session.policy.policy.refusal_text
            session.record.finish_reason = "content_filter"
            session.record.output_text = text
            self.gateway.finish(session.finish(Status.blocked, 200))
            self.raise_passthrough_exception(text, data, {"request_id": session.record.request_id})

    # -- non-streamed answers --------------------------------------------------------------

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: Any, response: Any) -> Any:
        request = self._take(data)
        if request is None:
            return response
        session = request.session
        try:
            upstream_step(session, ROUTE, request.sent_at, model=getattr(response, "model", None))
            if session.record.endpoint == "/v1/embeddings":
                usage = getattr(response, "usage", None)
                session.record.model_served = getattr(response, "model", None)
                session.record.prompt_tokens = getattr(usage, "prompt_tokens", None)
            elif isinstance(response, ModelResponse):
                result = await ResponseGuard(session, "chat").process_response(_dump(response))
                _write_back(response, result)
            else:
                raise TypeError(f"unexpected LiteLLM response type {type(response).__name__}")
        except WardenError as exc:
            self.gateway.finish(session.finish(Status.error, http_status(exc), exc.message))
            raise WardenProxyError(exc, session.record.request_id) from None
        except BaseException as exc:
            self.gateway.finish(session.finish(Status.error, 500, f"{type(exc).__name__}: {exc}"))
            raise
        self.gateway.finish(session.finish(http_status=200))
        return response

    # -- streamed answers ------------------------------------------------------------------

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        request = self._take(request_data)
        if request is None:
            async for item in response:
                yield item
            return
        async for out in self._guarded(request, response):
            yield out

    async def _guarded(self, request: OpenRequest, chunks: AsyncIterator[Any]) -> AsyncIterator[ModelResponseStream]:
        """Every upstream chunk through the session's ``ResponseGuard`` (the gateway's own
        ``guarded_chunks``); what it holds back is sent only once it is decided."""
        session = request.session
        guarded = guarded_chunks(
            session,
            ResponseGuard(session, "chat"),
            _dicts(chunks),
            route=ROUTE,
            started=request.sent_at,
            finish=self.gateway.finish,
        )
        async with contextlib.aclosing(guarded):
            async for batch in guarded:
                for out in batch:
                    yield ModelResponseStream(**out)

    # -- failures and headers --------------------------------------------------------------

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> None:
        request = self._take(request_data)
        if request is None:
            return  # Warden's own block, or a request it never opened: already recorded
        upstream = getattr(original_exception, "llm_provider", None) is not None
        if upstream:
            upstream_step(request.session, ROUTE, request.sent_at, error=str(original_exception))
        self.gateway.finish(
            request.session.finish(
                Status.upstream_error if upstream else Status.error,
                _status_of(original_exception),
                f"{type(original_exception).__name__}: {original_exception}",
            )
        )

    async def async_post_call_response_headers_hook(
        self,
        data: dict[str, Any],
        user_api_key_dict: Any,
        response: Any,
        request_headers: Any = None,
        litellm_call_info: Any = None,
    ) -> dict[str, str] | None:
        request_id = _request_id(data)
        return {"x-warden-request-id": request_id} if request_id else None

    # -- principals and per-request state --------------------------------------------------

    def principal_for(self, user_api_key_dict: Any) -> Principal:
        """The warden key named in the LiteLLM key's (then team's) admin metadata, else the default."""
        for field in ("metadata", "team_metadata"):
            meta = getattr(user_api_key_dict, field, None)
            wanted = meta.get(PRINCIPAL_KEY) if isinstance(meta, Mapping) else None
            if wanted:
                found = self.gateway.keys.by_id(str(wanted))
                if found is None:
                    # A mapping to a key that does not exist is a config error: fail closed.
                    raise WardenProxyError(BadRequest(f"Unknown {PRINCIPAL_KEY} '{wanted}' in key metadata."), None)
                return found
        return self.default_principal

    def _take(self, data: Mapping[str, Any]) -> OpenRequest | None:
        request_id = _request_id(data)
        return self._open.pop(request_id, None) if request_id else None

    def _expire(self) -> None:
        """Close requests LiteLLM never came back for (oldest first, so this stays cheap)."""
        cutoff = time.perf_counter() - self.max_open_s
        while self._open:
            request_id, request = next(iter(self._open.items()))
            if request.sent_at > cutoff:
                return
            del self._open[request_id]
            self.gateway.finish(request.session.finish(Status.error, 500, "no post-call hook ran for this request"))


# -- conversions (pure functions) -----------------------------------------------------------


def _default_principal(keys: KeyStore, key_id: str | None) -> Principal:
    if key_id is not None:
        found = keys.by_id(key_id)
        if found is None:
            raise ValueError(f"warden_key_id '{key_id}' is not a key id in the warden config")
        return found
    clients = [p for p in keys.principals() if p.role == "client"]
    return clients[0] if clients else keys.principals()[0]


def _request_id(data: Mapping[str, Any]) -> str | None:
    for key in ("metadata", "litellm_metadata"):
        meta = data.get(key)
        if isinstance(meta, Mapping) and isinstance(meta.get(REQUEST_ID_KEY), str):
            return str(meta[REQUEST_ID_KEY])
    return None


def _client_addr(data: Mapping[str, Any]) -> str | None:
    meta = data.get("metadata")
    addr = meta.get("requester_ip_address") if isinstance(meta, Mapping) else None
    return str(addr) if addr else None


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, (ProxyException, HTTPException)):
        code = getattr(exc, "code", None) or getattr(exc, "status_code", None)
    else:
        code = getattr(exc, "status_code", None)
    try:
        return int(code) if code is not None else 502
    except (TypeError, ValueError):
        return 502


async def _dicts(chunks: AsyncIterator[Any]) -> AsyncGenerator[list[dict[str, Any]], None]:
    """LiteLLM's stream items as the OpenAI chunk dicts the pipeline takes (batches of one)."""
    try:
        async for chunk in chunks:
            if isinstance(chunk, ModelResponseStream):
                yield [_dump(chunk)]
            elif isinstance(chunk, dict):
                yield [chunk]
            else:
                raise TypeError(f"unexpected LiteLLM stream item {type(chunk).__name__}")
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def _dump(obj: BaseModel) -> dict[str, Any]:
    # pydantic's own dump: LiteLLM's override only picks a default for exclude_unset
    return BaseModel.model_dump(obj, exclude_none=True)


def _write_back(response: ModelResponse, result: dict[str, Any]) -> None:
    """Copy what the guard decided (texts, tool-call arguments, finish reasons) onto LiteLLM's
    own response object, so its hidden params and headers survive."""
    decided = {int(c.get("index", 0)): c for c in result.get("choices") or []}
    for choice in response.choices:
        out = decided.get(int(choice.index or 0))
        if out is None:
            continue
        message, new = choice.message, out.get("message") or {}
        message.content = new.get("content")
        if getattr(message, "reasoning_content", None) is not None:
            message.reasoning_content = new.get("reasoning_content")
        if message.tool_calls:
            calls = new.get("tool_calls")
            if not calls:
                message.tool_calls = None
            else:
                for call, decided_call in zip(message.tool_calls, calls, strict=False):
                    function = getattr(call, "function", None)
                    if function is not None:
                        function.arguments = (decided_call.get("function") or {}).get("arguments")
        choice.finish_reason = out.get("finish_reason")
