"""Sending a response while watching the client, and injecting scripted faults into the bytes.

Starlette's StreamingResponse does not notice a client that leaves while the body iterator is
idle (uvicorn's `send` then silently drops data), so this response listens for
`http.disconnect` itself and cancels the body: that is how `/_sim/stats` counts cancelled
streams, and how a hanging reply stops when its caller gives up.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

import anyio
from anyio import CancelScope
from starlette.types import Receive, Scope, Send

from gateway.simulator.schema import Fault, Script
from gateway.simulator.state import Outcome, Stats, Ticket

HANG_SECONDS = 3600.0
MALFORMED_FRAME = b'data: {"id": "broken", "choices": [{"delta": \n\n'


class SimulatedDrop(Exception):
    """Raised inside a body so the server aborts the connection mid-response."""


@dataclass(frozen=True)
class Delivery:
    """How a reply is sent: pace, and which fault (if any) interrupts it."""

    delay_s: float = 0.0
    fault: Fault | None = None
    fault_after: int | None = None

    @classmethod
    def of(cls, script: Script | None) -> Delivery:
        if script is None:
            return cls()
        return cls(script.delay_ms / 1000, script.fault, script.fault_after)

    def fault_index(self, frames: int) -> int:
        """Frames sent before a mid-stream fault: half by default, never the closing frame."""
        wanted = self.fault_after if self.fault_after is not None else max(1, (frames - 1) // 2)
        return min(wanted, frames - 1)


async def paced(frames: Sequence[bytes], delivery: Delivery, *, delay_each: bool) -> AsyncGenerator[bytes, None]:
    """Yield `frames` with the scripted delay, applying a mid-stream fault at its point."""
    cut = delivery.fault_index(len(frames))
    for index, frame in enumerate(frames):
        if index == cut:
            if delivery.fault == "die_mid_stream":
                raise SimulatedDrop("scripted die_mid_stream")
            if delivery.fault == "hang_mid_stream":
                await anyio.sleep(HANG_SECONDS)
            if delivery.fault == "malformed_chunk":
                yield MALFORMED_FRAME
        if delivery.delay_s and (delay_each or index == 0):
            await anyio.sleep(delivery.delay_s)
        yield frame


class WatchedResponse:
    """An ASGI response that records how it ended: completed, cancelled by the client, or failed."""

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        *,
        stats: Stats,
        ticket: Ticket,
        media_type: str,
        hang_first: bool = False,
    ) -> None:
        self.body = body
        self.stats = stats
        self.ticket = ticket
        self.headers = [(b"content-type", media_type.encode()), (b"cache-control", b"no-cache")]
        self.hang_first = hang_first
        self.client_left = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = Outcome.CANCELLED
        error: Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch, receive, group.cancel_scope)
            try:
                await self._pump(send)
                outcome = Outcome.COMPLETED
            except OSError:
                outcome = Outcome.CANCELLED
            except Exception as exc:
                outcome, error = Outcome.FAILED, exc
            group.cancel_scope.cancel()
        await self.body.aclose()
        self.stats.end(self.ticket, outcome)
        if error is not None:
            raise error

    async def _pump(self, send: Send) -> None:
        if self.hang_first:
            await anyio.sleep(HANG_SECONDS)
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        async for frame in self.body:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _watch(self, receive: Receive, scope: CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.client_left = True
        scope.cancel()
