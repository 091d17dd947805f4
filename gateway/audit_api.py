"""Reads of the audit trail for the reasoning-path interface (``/v1/audit/...``).

Queries run in a worker thread: the request path never waits on the database.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from gateway.errors import AuditUnavailable

STARTING_WAIT_S = 5.0

if TYPE_CHECKING:
    from gateway.service import Gateway


async def fetch_request(gw: Gateway, request_id: str) -> dict[str, Any] | None:
    from audit.read.export import get_request

    engine = gw.audit.engine
    wait_started = getattr(gw.audit, "wait_started", None)
    if engine is None and wait_started is not None:
        # Just after a start the writer may still be connecting: a moment's wait beats a 503.
        await asyncio.to_thread(wait_started, STARTING_WAIT_S)
        engine = gw.audit.engine
    if gw.audit.state == "failed":
        raise AuditUnavailable(f"The audit database cannot be used: {gw.audit.error}")
    if engine is None:
        if gw.audit.state == "off":
            return None
        raise AuditUnavailable(f"The audit trail is not available yet ({gw.audit.state}).")
    return await asyncio.to_thread(get_request, engine, request_id)
