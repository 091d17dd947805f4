"""The simulator's ASGI app: OpenAI-compatible routes (with and without `/v1`) plus `/_sim` controls."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from gateway.simulator.control import ControlEndpoints
from gateway.simulator.endpoints import OpenAIEndpoints
from gateway.simulator.schema import Shape
from gateway.simulator.state import SimState


def create_app(*, record_limit: int = 200, shape: Shape = "openai") -> Starlette:
    """``shape``: whose chunk bytes chat streams copy, unless a script says otherwise."""
    state = SimState(record_limit=record_limit)
    api = OpenAIEndpoints(state, shape)
    control = ControlEndpoints(state)
    routes: list[BaseRoute] = [
        Route("/health", control.health),
        Route("/_sim/script", control.add_script, methods=["POST"]),
        Route("/_sim/script", control.list_scripts, methods=["GET"]),
        Route("/_sim/script", control.clear_scripts, methods=["DELETE"]),
        Route("/_sim/requests", control.requests, methods=["GET"]),
        Route("/_sim/requests", control.clear_requests, methods=["DELETE"]),
        Route("/_sim/stats", control.stats, methods=["GET"]),
        Route("/_sim/stats", control.clear_stats, methods=["DELETE"]),
        Route("/_sim/reset", control.reset, methods=["POST"]),
    ]
    for prefix in ("/v1", ""):
        routes += [
            Route(f"{prefix}/models", api.models),
            Route(f"{prefix}/models/{{model:path}}", api.model),
            Route(f"{prefix}/chat/completions", api.chat, methods=["POST"]),
            Route(f"{prefix}/completions", api.completions, methods=["POST"]),
            Route(f"{prefix}/embeddings", api.embeddings, methods=["POST"]),
        ]
    app = Starlette(routes=routes)
    app.state.sim = state
    return app
