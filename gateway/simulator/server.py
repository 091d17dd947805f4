"""Serving the simulator with uvicorn on a socket bound here, so port 0 picks a free port."""

from __future__ import annotations

import logging
import socket

import uvicorn

from gateway.simulator.app import create_app
from gateway.simulator.schema import Shape
from gateway.simulator.streaming import SimulatedDrop

READY_PREFIX = "warden-simulator listening on "


class _HideScriptedDrops(logging.Filter):
    """A scripted `die_mid_stream` is not a bug; keep it out of uvicorn's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SimulatedDrop)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def run(host: str = "127.0.0.1", port: int = 8100, *, record_limit: int = 200, shape: Shape = "openai") -> None:
    """Serve until interrupted; prints one line `READY_PREFIX + http://host:port` once listening."""
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(record_limit=record_limit, shape=shape),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    logging.getLogger("uvicorn.error").addFilter(_HideScriptedDrops())
    shown = f"[{host}]" if ":" in host else host
    print(f"{READY_PREFIX}http://{shown}:{bound}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
