"""The gateway's OpenAPI document, with the request bodies the routes really validate.

The routes read their bodies themselves (size limit first, then strict validation), so
FastAPI cannot infer them; this module adds them from the same pydantic models the routes
use, plus the bearer-key security scheme and the OpenAI-shaped error responses each route
can give. Served at ``/openapi.json``; ``tests/gateway/test_fuzz_api.py`` fuzzes the gateway from it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from gateway.api_models import ChatRequest, CompletionRequest, EmbeddingRequest


def bodies() -> dict[tuple[str, str], type[BaseModel]]:
    from gateway.admin_api import Activate, NewKey, NewVersion  # the audit models: off the start-up path

    return {
        ("/v1/chat/completions", "post"): ChatRequest,
        ("/v1/completions", "post"): CompletionRequest,
        ("/v1/embeddings", "post"): EmbeddingRequest,
        ("/v1/admin/keys", "post"): NewKey,
        ("/v1/admin/policies/{name}/versions", "post"): NewVersion,
        ("/v1/admin/policies/{name}/activate", "post"): Activate,
    }


#: what each kind of route may answer besides success (see the README's error table)
MODEL_ERRORS = ("400", "401", "404", "413", "429", "502", "503", "504")
ADMIN_ERRORS = ("400", "401", "403", "404", "409", "413", "503")
AUDIT_ERRORS = ("401", "403", "404", "503")
PUBLIC = {"/health", "/metrics"}

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code", "param"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": ["string", "null"]},
                "param": {"type": ["string", "null"]},
            },
        },
        "warden": {"type": "object"},
    },
}


def _errors_for(path: str) -> tuple[str, ...]:
    if path.startswith("/v1/admin/"):
        return ADMIN_ERRORS
    if path.startswith("/v1/audit/"):
        return AUDIT_ERRORS
    if path == "/v1/models":
        return ("401",)
    return MODEL_ERRORS


def build(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {})
    models = components.setdefault("schemas", {})
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    models["Error"] = _ERROR
    for (path, method), model in bodies().items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        models.update(body.pop("$defs", {}))
        models[model.__name__] = body
        schema["paths"][path][method]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path, operations in schema["paths"].items():
        for op in operations.values():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's own validation error: the gateway answers 400
            if path not in PUBLIC:
                op["security"] = [{"bearer": []}]
                for status in _errors_for(path):
                    responses.setdefault(status, {"description": "OpenAI-shaped error", **error})
    if "/health" in schema["paths"]:
        schema["paths"]["/health"]["get"]["responses"].setdefault("503", {"description": "audit database unusable"})
    return schema


def install(app: FastAPI) -> None:
    """Serve ``build(app)`` (made once, on first request) as the app's OpenAPI document."""
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cached:
            cached.update(build(app))
        return cached

    app.openapi = openapi  # type: ignore[method-assign]
