"""The HTTP surface: OpenAI-compatible routes, thin over ``gateway.pipeline.flow``.

Routes parse and authenticate; everything else happens in the pipeline. Every response,
errors included, carries ``x-warden-request-id``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import Principal, require_role
from gateway.config import GatewayConfig, Role
from gateway.errors import (
    AuditUnavailable,
    BadRequest,
    BodyTooLarge,
    InvalidJSON,
    NotFound,
    WardenError,
    http_status,
)
from gateway.metrics import CONTENT_TYPE
from gateway.pipeline.flow import DONE, Streamed, run_flow
from gateway.pipeline.session import new_request_id
from gateway.service import Gateway
from gateway.upstream.base import Endpoint

log = logging.getLogger("warden.app")
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
#: admin bodies carry at most a policy text
ADMIN_BODY_BYTES = 2 * 1024 * 1024


class SseResponse(StreamingResponse):
    """A guarded stream: the write that carries ``[DONE]`` also ends the body (the chunked
    encoding's last chunk), one write fewer per stream than ``StreamingResponse`` makes."""

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        ended = False
        async for chunk in self.body_iterator:
            if ended:
                continue  # nothing follows [DONE]; the loop only lets the generator finish
            data = chunk.encode(self.charset) if isinstance(chunk, str) else bytes(chunk)
            ended = data.endswith(DONE)
            await send({"type": "http.response.body", "body": data, "more_body": not ended})
        if not ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class RequestIdMiddleware:
    """Gives every request an id and puts it on every response, before any route runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-warden-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(exc: WardenError, request_id: str) -> Response:
    return _json(exc.to_body(request_id), http_status(exc), exc.headers())


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"Request body is larger than the limit of {limit} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"Request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"We could not parse the JSON body of your request: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidJSON("The request body must be a JSON object.")
    return body


def create_app(config: GatewayConfig, gateway: Gateway | None = None) -> FastAPI:
    gw = gateway or Gateway(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = FastAPI(title="Warden", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = gw
    app.add_middleware(RequestIdMiddleware)
    if config.cors.allow_origins:  # off unless configured: no CORS header is ever sent otherwise
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors.allow_origins,
            allow_methods=config.cors.allow_methods,
            allow_headers=config.cors.allow_headers,
            expose_headers=["x-warden-request-id", "retry-after"],
            max_age=config.cors.max_age_s,
        )

    def rid(request: Request) -> str:
        return str(request.state.request_id)

    def principal(request: Request) -> Principal:
        return gw.keys.authenticate(request.headers.get("authorization"))

    @app.exception_handler(WardenError)
    async def _warden_error(request: Request, exc: WardenError) -> Response:
        return error_response(exc, rid(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = NotFound if exc.status_code == 404 else WardenError
        err = kind(str(exc.detail))
        return _json(err.to_body(rid(request)), exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error in request %s", rid(request))
        return error_response(WardenError("Internal error in the gateway."), rid(request))

    async def model_route(request: Request, endpoint: Endpoint) -> Response:
        who = principal(request)
        limits = await gw.limiter.check(who.key_id, who.rpm, who.tpm)
        body = await read_json(request, config.max_body_bytes)
        if gw.upstreams is None:
            raise NotFound("This gateway serves no models.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("Invalid request: model: must be a non-empty string.", param="model")
        upstream = gw.upstreams.get(model)
        session = gw.open_session(
            who,
            request_id=rid(request),
            endpoint=f"/v1/{endpoint}",
            model=str(model),
            stream=bool(body.get("stream")),
            client_addr=request.client.host if request.client else None,
        )
        result = await run_flow(session, upstream, endpoint, body, gw.finish, config.limits)
        durable = config.audit.ack == "durable"
        if isinstance(result, Streamed):
            headers = {**SSE_HEADERS, **limits.headers()}
            stream = held_until_durable(result.body, rid(request)) if durable else result.body
            return SseResponse(stream, media_type="text/event-stream", headers=headers)
        if durable and not await gw.audit.durable(rid(request), config.audit.ack_timeout_s):
            raise AuditUnavailable("The answer's audit record could not be made durable in time.")
        return _json(result, headers=limits.headers())

    async def held_until_durable(body: AsyncIterator[bytes], request_id: str) -> AsyncIterator[bytes]:
        """The stream, with its final ``[DONE]`` held until the record is durable (the record is
        finished before ``[DONE]`` is produced); an error event instead if it never is."""
        async for chunk in body:
            # ``[DONE]`` ends the stream's last write, after its tail (``flow._relay``).
            if chunk.endswith(DONE) and not await gw.audit.durable(request_id, config.audit.ack_timeout_s):
                err = AuditUnavailable("The answer's audit record could not be made durable in time.")
                yield chunk[: -len(DONE)] + b"data: " + orjson.dumps(err.to_body(request_id)) + b"\n\n"
                return
            yield chunk

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await model_route(request, "chat/completions")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await model_route(request, "completions")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        return await model_route(request, "embeddings")

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        principal(request)
        names = gw.upstreams.names() if gw.upstreams else []
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "warden"} for n in names]
        return _json({"object": "list", "data": data})

    @app.get("/health")
    async def health() -> Response:
        policies = [{"name": p.name, "version": p.version} for p in gw.policies.all()]
        audit: dict[str, Any] = {"state": gw.audit.state}
        if gw.audit.error:
            audit["error"] = gw.audit.error
        # A gateway whose audit trail cannot be written must not look ready to a load balancer,
        # even though records wait safely in the spool meanwhile.
        failed = gw.audit.state == "failed"
        body = {"status": "degraded" if failed else "ok", "policies": policies, "audit": audit, "time": time.time()}
        return _json(body, 503 if failed else 200)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(gw.prometheus.render(), media_type=CONTENT_TYPE)

    async def guarded(
        request: Request,
        action: str,
        roles: tuple[Role, ...],
        run: Callable[[Principal], Awaitable[tuple[Any, dict[str, Any]]]],
        status: int = 200,
    ) -> Response:
        """An admin or audit-API call: the role is checked, and the call, done or refused,
        becomes an audit record."""
        from gateway.admin_api import record_action

        who = principal(request)
        detail: dict[str, Any] = {}
        error: WardenError | None = None
        try:
            require_role(who, *roles)
            body, detail = await run(who)
        except WardenError as exc:
            error = exc
            raise
        except Exception:
            error = WardenError("Internal error in the gateway.")
            raise
        finally:
            record_action(
                gw,
                who,
                request_id=rid(request),
                endpoint=f"{request.method} {request.url.path}",
                action=action,
                detail=detail,
                error=error,
                client_addr=request.client.host if request.client else None,
            )
        return body if isinstance(body, Response) else _json(body, status)

    @app.get("/v1/audit/requests/{request_id}")
    async def audit_request(request: Request, request_id: str) -> Response:
        async def run(_: Principal) -> tuple[Any, dict[str, Any]]:
            from gateway.audit_api import fetch_request

            found = await fetch_request(gw, request_id)
            if found is None:
                raise NotFound(f"No audit record for request '{request_id}'.")
            return found, {"request_id": request_id}

        return await guarded(request, "audit.read", ("reviewer", "admin"), run)

    # -- admin API (gateway.admin_api) ---------------------------------------------------

    @app.post("/v1/admin/keys", status_code=201)
    async def admin_create_key(request: Request) -> Response:
        from gateway import admin_api

        async def run(who: Principal) -> tuple[Any, dict[str, Any]]:
            return await admin_api.create_key(gw, who, await read_json(request, ADMIN_BODY_BYTES))

        return await guarded(request, "key.create", ("admin",), run, status=201)

    @app.get("/v1/admin/keys")
    async def admin_list_keys(request: Request) -> Response:
        from gateway import admin_api

        async def run(_: Principal) -> tuple[Any, dict[str, Any]]:
            listed = await admin_api.list_keys(gw)
            return listed, {"count": len(listed["data"])}

        return await guarded(request, "key.list", ("admin",), run)

    @app.delete("/v1/admin/keys/{key_id}")
    async def admin_revoke_key(request: Request, key_id: str) -> Response:
        from gateway import admin_api

        async def run(who: Principal) -> tuple[Any, dict[str, Any]]:
            return await admin_api.revoke_key(gw, who, key_id), {"key_id": key_id}

        return await guarded(request, "key.revoke", ("admin",), run)

    @app.get("/v1/admin/policies")
    async def admin_list_policies(request: Request) -> Response:
        from gateway import admin_api

        async def run(_: Principal) -> tuple[Any, dict[str, Any]]:
            return await admin_api.list_policies(gw), {}

        return await guarded(request, "policy.list", ("admin",), run)

    @app.post("/v1/admin/policies/{name}/versions", status_code=201)
    async def admin_save_version(request: Request, name: str) -> Response:
        from gateway import admin_api

        async def run(who: Principal) -> tuple[Any, dict[str, Any]]:
            out = await admin_api.save_version(gw, who, name, await read_json(request, ADMIN_BODY_BYTES))
            return out, {"policy": name, "version": out["version"], "activated": out["active"]}

        return await guarded(request, "policy.save", ("admin",), run, status=201)

    @app.post("/v1/admin/policies/{name}/activate")
    async def admin_activate(request: Request, name: str) -> Response:
        from gateway import admin_api

        async def run(who: Principal) -> tuple[Any, dict[str, Any]]:
            out = await admin_api.activate(gw, who, name, await read_json(request, ADMIN_BODY_BYTES))
            return out, {"policy": name, "version": out["version"]}

        return await guarded(request, "policy.activate", ("admin",), run)

    @app.get("/v1/audit/live")
    async def audit_live(request: Request, tenant: str | None = None) -> Response:
        async def run(_: Principal) -> tuple[Any, dict[str, Any]]:
            return None, {"tenant": tenant}

        await guarded(request, "audit.live", ("reviewer", "admin"), run)

        async def events() -> AsyncIterator[bytes]:
            yield b": connected\n\n"
            async for event in gw.live.subscribe(tenant):
                yield b"data: " + orjson.dumps(event) + b"\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)

    from gateway.openapi import install

    install(app)
    return app
