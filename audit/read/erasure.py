"""Erase stored texts (privacy requests, retention) while every chain still verifies.

``erase(engine, request_id=... | tenant=... | subject_fingerprint=..., actor=...)`` removes the
input and output text, the step texts and the span fingerprints (record and index rows) and
the commitment salt of the chosen records; it keeps the two top-level commitments, so each
record still hashes to what its chain says (``audit.commitments``). Each batch of up to
``BATCH`` records is one transaction that also appends an erasure record (who, when, scope,
the request ids) to an erasure chain of its own, which verify walks like the others and
anchors cover; verify reports an erased record that no erasure record names.

Records written before commitments existed (format 1) are left as they are and counted: their
hash covers the text itself, so erasing it would break the chain (prune removes them whole).
Step ``detail`` (a detector's evidence n-grams, for example) is hashed directly and not erased.

``apply_retention`` erases texts older than ``audit.retention_days`` per tenant, and prunes
whole records older than ``audit.prune_days``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Engine, exists, func, insert, select, update

from audit.chain import Chain, ChainKey, link_hash
from audit.commitments import INPUT, OUTPUT, TEXTS, dumps, erasure_canonical, top_commitments
from audit.db import WRITE_OPTIONS
from audit.record import ChainKind
from audit.rows import ERASURES, REQUESTS, SPANS
from audit.settings import retention_for
from audit.write.store import save_head

BATCH = 500


@dataclass(slots=True)
class EraseResult:
    erased: int = 0
    #: matching records written before commitments (format 1): not erasable in place
    not_erasable: int = 0
    #: matching records erased before
    already_erased: int = 0
    erasure_ids: list[str] = field(default_factory=list)

    def merge(self, other: EraseResult) -> None:
        self.erased += other.erased
        self.not_erasable += other.not_erasable
        self.already_erased += other.already_erased
        self.erasure_ids += other.erasure_ids


def erase(
    engine: Engine,
    *,
    actor: str,
    request_id: str | None = None,
    tenant: str | None = None,
    subject_fingerprint: str | None = None,
    before: datetime | None = None,
    scope: str | None = None,
    key: ChainKey | None = None,
) -> EraseResult:
    """Erase the texts of the records chosen by exactly one of ``request_id``, ``tenant``
    or ``subject_fingerprint`` (a span fingerprint: every record where that value was found),
    optionally only those started before ``before``."""
    chosen = [(n, v) for n, v in (("request", request_id), ("tenant", tenant), ("subject", subject_fingerprint)) if v]
    if len(chosen) != 1:
        raise ValueError("give exactly one of request_id, tenant or subject_fingerprint")
    what, selector = chosen[0]
    r = REQUESTS.c
    if what == "request":
        where = [r.request_id == selector]
    elif what == "tenant":
        where = [r.tenant == selector]
    else:
        where = [exists().where(SPANS.c.request_id == r.request_id, SPANS.c.fingerprint == selector)]
    if before is not None:
        where.append(r.started_at < before)
    result = EraseResult()
    with engine.connect() as conn:
        count = select(func.count()).select_from(REQUESTS)
        result.not_erasable = int(
            conn.execute(count.where(*where, r.salt.is_(None), r.erasure_id.is_(None))).scalar_one()
        )
        result.already_erased = int(conn.execute(count.where(*where, r.erasure_id.is_not(None))).scalar_one())
    chain = Chain.new(ChainKind.erasures, key)
    while True:
        with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
            rows = list(
                conn.execute(
                    select(r.request_id, r.salt, r.input_text, r.output_text, r.texts, r.erasure_id)
                    .where(*where, r.salt.is_not(None), r.erasure_id.is_(None))
                    .order_by(r.request_id)
                    .limit(BATCH)
                ).mappings()
            )
            if not rows:
                return result
            eid = uuid.uuid4().hex
            ids = [row["request_id"] for row in rows]
            _append_erasure(conn, chain, eid, actor, scope or what, selector, ids)
            for row in rows:
                kept = dict(zip((INPUT, OUTPUT, TEXTS), top_commitments(row), strict=True))
                conn.execute(
                    update(REQUESTS)
                    .where(r.request_id == row["request_id"])
                    .values(
                        input_text=None,
                        output_text=None,
                        texts=None,
                        salt=None,
                        erasure_id=eid,
                        erased_commits=dumps(kept).decode(),
                    )
                )
            conn.execute(update(SPANS).where(SPANS.c.request_id.in_(ids)).values(fingerprint=None))
            result.erased += len(ids)
            result.erasure_ids.append(eid)


def _append_erasure(conn: Any, chain: Chain, eid: str, actor: str, scope: str, selector: str, ids: list[str]) -> None:
    row: dict[str, Any] = {
        "erasure_id": eid,
        "chain_id": chain.chain_id,
        "seq": chain.seq + 1,
        "at": datetime.now(UTC),
        "actor": actor,
        "scope": scope[:16],
        "selector": selector,
        "request_ids": orjson.dumps(sorted(ids)).decode(),
    }
    row["prev_hash"] = chain.head
    row["hash"] = link_hash(chain.key, chain.head, erasure_canonical(row))
    conn.execute(insert(ERASURES).values(**row))
    read = chain.seq
    chain.seq, chain.head = row["seq"], row["hash"]
    save_head(conn, chain, read)
    chain.registered = True


def apply_retention(
    engine: Engine,
    days: int | Mapping[str, int] | None,
    *,
    prune_days: int | None = None,
    now: datetime | None = None,
    key: ChainKey | None = None,
) -> EraseResult:
    """Erase texts past each tenant's retention; prune whole records past ``prune_days``."""
    now = now or datetime.now(UTC)
    result = EraseResult()
    if days is not None:
        table = {"*": days} if isinstance(days, int) else dict(days)
        with engine.connect() as conn:
            tenants = list(conn.execute(select(REQUESTS.c.tenant).distinct()).scalars())
        for tenant in sorted(tenants):
            keep = retention_for(table, tenant)
            if keep is None:
                continue
            result.merge(
                erase(
                    engine,
                    actor="retention",
                    tenant=tenant,
                    before=now - timedelta(days=keep),
                    scope="retention",
                    key=key,
                )
            )
    if prune_days is not None:
        from audit.read.prune import prune

        prune(engine, now - timedelta(days=prune_days), key=key)
    return result
