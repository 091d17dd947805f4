"""What the dashboard's query modules share: the tables' columns, the newest-ruling condition,
time buckets, and reading one step's detail from a record's steps document.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import BigInteger, ColumnElement, Engine, Integer, and_, cast, exists, func, not_, or_

from audit.rows import ACTED, REQUESTS, REVIEWS

R, S, V = REQUESTS.c, ACTED.c, REVIEWS.c


def latest_review_filter(alias: Any) -> ColumnElement[bool]:
    """``alias`` is the newest review of its request (ties broken by review id)."""
    later = REVIEWS.alias("later")
    return not_(
        exists().where(
            later.c.request_id == alias.c.request_id,
            or_(later.c.at > alias.c.at, and_(later.c.at == alias.c.at, later.c.review_id > alias.c.review_id)),
        )
    )


def epoch(engine: Engine, col: Any) -> ColumnElement[int]:
    if engine.dialect.name == "sqlite":
        return cast(func.strftime("%s", col), Integer)
    return cast(func.extract("epoch", col), BigInteger)


def bucket(engine: Engine, bucket_s: int) -> ColumnElement[int]:
    """Whole multiples of ``bucket_s`` seconds since the epoch, from the dialect's epoch function."""
    return epoch(engine, R.started_at) // bucket_s


def bucket_time(bucket: int | None, bucket_s: int) -> datetime:
    return datetime.fromtimestamp(int(bucket or 0) * bucket_s, UTC)


def step_detail(steps_json: str | None, seq: int) -> dict[str, Any]:
    """One step's detail from a record's steps document ({} when it is not there)."""
    try:
        steps = orjson.loads(steps_json or "[]")
    except orjson.JSONDecodeError:
        return {}
    for step in steps:
        if isinstance(step, dict) and step.get("seq") == seq:
            detail = step.get("detail")
            return detail if isinstance(detail, dict) else {}
    return {}
