"""A reviewer's ruling on a request, as the dashboard hands it to the writer.

Kept beside ``audit.record`` (which it mirrors) rather than in it: reviews come from the
dashboard, not from the request pipeline. Chain fields are filled in by the writer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from audit.record import Ruling


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(slots=True)
class ReviewRecord:
    request_id: str
    reviewer: str
    ruling: Ruling
    note: str = ""
    at: datetime = field(default_factory=_now)
    review_id: str = field(default_factory=_new_id)
    chain_id: str | None = None
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None
