"""The `/_sim` routes tests use to script replies and to see what reached the upstream."""

from __future__ import annotations

import dataclasses

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from gateway.simulator.responses import json_response
from gateway.simulator.schema import Script
from gateway.simulator.state import SimState


class ControlEndpoints:
    def __init__(self, state: SimState) -> None:
        self.state = state

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def add_script(self, request: Request) -> Response:
        try:
            script = Script.model_validate(orjson.loads(await request.body()))
        except orjson.JSONDecodeError as exc:
            return json_response({"detail": f"invalid JSON: {exc}"}, 422)
        except ValidationError as exc:
            return json_response({"detail": exc.errors(include_url=False, include_context=False)}, 422)
        return json_response({"active": self.state.scripts.add(script)})

    async def list_scripts(self, request: Request) -> Response:
        scripts = [s.model_dump(mode="json") for s in self.state.scripts.active()]
        return json_response({"scripts": scripts})

    async def clear_scripts(self, request: Request) -> Response:
        self.state.scripts.clear()
        return json_response({"cleared": True})

    async def requests(self, request: Request) -> Response:
        return json_response({"requests": [dataclasses.asdict(r) for r in self.state.requests]})

    async def clear_requests(self, request: Request) -> Response:
        self.state.requests.clear()
        return json_response({"cleared": True})

    async def stats(self, request: Request) -> Response:
        return json_response(self.state.stats.counters.as_dict())

    async def clear_stats(self, request: Request) -> Response:
        self.state.stats.reset()
        return json_response({"cleared": True})

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        return json_response({"cleared": True})
