"""Whether the process is still loading libraries in the background after start.

Start-up work off the request path (presidio and spaCy, litellm, the audit writer's
SQLAlchemy) runs in threads while the gateway already answers. Imports hold the interpreter
lock for long stretches, so a check with a tight ``timeout_ms`` can be starved past it
through no fault of its own. ``pipeline.checks`` asks ``WARMUP`` whether that is what
happened: a check that times out while start-up work runs gets a fresh budget once it is
over, instead of failing closed on the first requests after a restart.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Warmup:
    def __init__(self) -> None:
        self._active = 0
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    @contextmanager
    def running(self) -> Iterator[None]:
        with self._lock:
            self._active += 1
            self._idle.clear()
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self._idle.set()

    def busy(self) -> bool:
        return not self._idle.is_set()

    async def settled(self, limit_s: float) -> bool:
        """Wait (without blocking the event loop) until no start-up work runs; False at the limit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while self.busy():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True


WARMUP = Warmup()
