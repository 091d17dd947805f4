"""In-process fan-out of audit steps as they happen, for ``GET /v1/audit/live``.

Publishing costs one dict look-up when nobody listens. Each subscriber has a bounded
queue; a subscriber that falls behind loses events (and is told so) rather than slowing
requests down.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from audit.record import StepRecord

QUEUE_SIZE = 1000


@dataclass(slots=True, eq=False)  # identity-hashed: kept in a set
class _Subscriber:
    tenant: str | None
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: int = 0


class LiveHub:
    def __init__(self) -> None:
        self._subscribers: set[_Subscriber] = set()

    def publish(self, request_id: str, tenant: str, step: StepRecord) -> None:
        if not self._subscribers:
            return
        event = {
            "request_id": request_id,
            "tenant": tenant,
            "seq": step.seq,
            "stage": step.stage.value,
            "name": step.name,
            "verdict": step.verdict.value,
            "score": step.score,
            "enforced": step.enforced,
            "latency_ms": step.latency_ms,
            "spans": [{"entity_type": s.entity_type, "start": s.start, "end": s.end} for s in step.spans],
            "text": step.text,
            "at": step.at.isoformat() if step.at else None,
        }
        for sub in self._subscribers:
            if sub.tenant is not None and sub.tenant != tenant:
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.dropped += 1

    async def subscribe(self, tenant: str | None) -> AsyncIterator[dict[str, Any]]:
        sub = _Subscriber(tenant)
        self._subscribers.add(sub)
        try:
            while True:
                event = await sub.queue.get()
                if sub.dropped:
                    yield {"dropped": sub.dropped}
                    sub.dropped = 0
                yield event
        finally:
            self._subscribers.discard(sub)
