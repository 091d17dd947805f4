"""Reads of the audit trail for the reasoning-path interface (``/v1/audit/...``).

Queries run in a worker thread: the request path never waits on the database.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from gateway.errors import AuditUnavailable

if TYPE_CHECKING:
    from gateway.service import Gateway


async def fetch_request(gw: Gateway, request_id: str) -> dict[str, Any] | None:
    from audit.export import get_request

    engine = gw.audit.engine
    if engine is None:
        if gw.audit.state == "off":
            return None
        raise AuditUnavailable(f"The audit trail is not available yet ({gw.audit.state}).")
    return await asyncio.to_thread(get_request, engine, request_id)
