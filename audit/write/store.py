"""One write transaction: drop records already stored, link the rest, insert, move the heads.

Linking happens inside the transaction that commits, so a chain in the database never has a
gap: a batch that fails leaves the chain where it was, and its records go to the spool
unlinked. Idempotence is on ``request_id`` (and ``review_id``): a record that is already
stored is skipped, which is what makes replaying a spool twice harmless. A stored record
with the same id but different content is a *conflict*, handed back for the dead-letter file.

Errors come out as two kinds: ``Unavailable`` (connection refused or lost, locked, timed
out, schema missing: try again later, spool meanwhile) and ``Rejected`` (the data itself
was refused: isolate the bad record).
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, Table, insert, select, update
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from audit.chain import GENESIS, MAX_CHAIN_ID, Chain, link_hash
from audit.db import WRITE_OPTIONS
from audit.record import ChainKind
from audit.rows import CHAINS, REQUESTS, REVIEWS
from audit.write.bulk import insert_records, insert_reviews
from audit.write.prepared import Prepared

log = logging.getLogger("warden.audit")


class HeadMoved(Exception):
    """Another writer moved this chain's head since it was read: link again from the new one.

    The unique ``(chain_id, seq)`` used to catch this alone; a partitioned table's unique key
    also holds ``started_at`` (``audit.partitions``), so the head moves by compare-and-set.
    """


#: errors about the data itself; anything else means "the database cannot take it now"
_REFUSED = (
    IntegrityError,
    DataError,
    psycopg.IntegrityError,
    psycopg.DataError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
)
#: tries when other writers keep moving a shared chain's head
_HEAD_TRIES = 5


class Unavailable(Exception):
    """The database cannot take writes now."""


class Rejected(Exception):
    """The database refused the data of this batch."""


@dataclass(slots=True)
class BatchOutcome:
    inserted: int = 0
    duplicates: int = 0
    conflicts: list[Prepared] = field(default_factory=list)


def commit_batch(
    engine: Engine, requests: Chain, reviews: Chain, items: Sequence[Prepared], *, dedupe: bool = True
) -> BatchOutcome:
    """Write ``items`` in one transaction.

    ``dedupe=False`` is for records that cannot be stored yet (fresh off the queue): it skips
    the lookup of their ids, and only if the database then refuses the batch is it written
    again with the lookup, so a duplicate is still told from a conflict.
    """
    for _ in range(_HEAD_TRIES):
        try:
            try:
                return _commit(engine, requests, reviews, items, dedupe=dedupe)
            except Rejected:
                if dedupe:
                    raise
                return _commit(engine, requests, reviews, items, dedupe=True)
        except HeadMoved:
            continue  # the chains were marked out of sync: the next try re-reads their heads
    raise Unavailable(f"audit chain {requests.chain_id}: other writers keep moving its head")


def _commit(
    engine: Engine, requests: Chain, reviews: Chain, items: Sequence[Prepared], *, dedupe: bool
) -> BatchOutcome:
    saved = requests.snapshot(), reviews.snapshot()
    try:
        with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
            outcome = _write(conn, requests, reviews, items, dedupe=dedupe)
    except (SQLAlchemyError, psycopg.Error, sqlite3.Error, HeadMoved) as exc:
        requests.restore(saved[0])
        reviews.restore(saved[1])
        # A failed COMMIT may still have committed: re-read the heads before linking again.
        requests.synced = reviews.synced = False
        for item in items:
            item.unlink()
        cause = getattr(exc, "orig", None) or exc  # COPY raises psycopg's errors unwrapped
        if isinstance(cause, HeadMoved):
            raise
        if isinstance(cause, _REFUSED):
            raise Rejected(str(cause)) from exc
        raise Unavailable(str(cause)) from exc
    requests.registered = requests.registered or requests.seq > 0
    reviews.registered = reviews.registered or reviews.seq > 0
    return outcome


def _write(
    conn: Connection, requests: Chain, reviews: Chain, items: Sequence[Prepared], *, dedupe: bool
) -> BatchOutcome:
    outcome = BatchOutcome()
    records = [i for i in items if i.kind is ChainKind.requests]
    revs = [i for i in items if i.kind is ChainKind.reviews]
    if dedupe:
        fresh_records = _fresh(conn, REQUESTS, "request_id", records, requests, outcome)
        fresh_reviews = _fresh(conn, REVIEWS, "review_id", revs, reviews, outcome)
    else:
        fresh_records, fresh_reviews = records, revs
    if fresh_records:
        _sync(conn, requests)
        read = requests.seq
        for r in fresh_records:
            requests.link(r)
        insert_records(conn, fresh_records)
        save_head(conn, requests, read)
    if fresh_reviews:
        _sync(conn, reviews)
        read = reviews.seq
        for v in fresh_reviews:
            reviews.link(v)
        insert_reviews(conn, fresh_reviews)
        save_head(conn, reviews, read)
    outcome.inserted = len(fresh_records) + len(fresh_reviews)
    return outcome


def _fresh(
    conn: Connection, table: Table, id_col: str, items: list[Prepared], chain: Chain, outcome: BatchOutcome
) -> list[Prepared]:
    if not items:
        return []
    col = table.c[id_col]
    stored = {
        row[id_col]: row
        for row in conn.execute(
            select(col, table.c.chain_id, table.c.seq, table.c.prev_hash, table.c.hash, *_salt(table)).where(
                col.in_({i.id for i in items})
            )
        ).mappings()
    }
    fresh: list[Prepared] = []
    seen: set[str] = set()
    for item in items:
        key = item.id
        if key in seen:
            outcome.conflicts.append(item)
        elif key in stored:
            if _same(item, stored[key], chain):
                outcome.duplicates += 1
            else:
                outcome.conflicts.append(item)
        else:
            seen.add(key)
            fresh.append(item)
    return fresh


def _salt(table: Table) -> list[Any]:
    return [table.c.salt] if table is REQUESTS else []


def _same(item: Prepared, stored: Any, chain: Chain) -> bool:
    """Is ``item`` the record already stored under its id (a replay), or a different one?"""
    probe = item
    salt = stored.get("salt")
    if item.plain is not None and salt is not None and salt != item.plain.salt:
        probe = item.resalted(salt)  # sent again: it was given a fresh salt
    probe.obj["chain_id"], probe.obj["seq"] = stored["chain_id"], stored["seq"]
    same: bool = link_hash(chain.key, stored["prev_hash"], probe.canonical()) == stored["hash"]
    probe.unlink()
    return same


def _sync(conn: Connection, chain: Chain) -> None:
    if chain.synced:
        return
    c = CHAINS.c
    row = conn.execute(
        select(c.last_seq, c.head_hash, c.algorithm, c.key_id).where(c.chain_id == chain.chain_id)
    ).first()
    if row is not None and (row.algorithm, row.key_id) != (chain.key.algorithm, chain.key.key_id):
        # Continuing would mix keys in one chain, which could never verify: fork a new one.
        log.warning("audit chain %s was written with another key; starting a new chain", chain.chain_id)
        chain.chain_id = f"{chain.chain_id[: MAX_CHAIN_ID - 9]}-{uuid.uuid4().hex[:8]}"
        chain.seq, chain.head, chain.registered = 0, GENESIS, False
    elif row is not None:
        chain.seq, chain.head, chain.registered = row.last_seq, row.head_hash, True
    chain.synced = True


def save_head(conn: Connection, chain: Chain, read: int) -> None:
    """Move the head from ``read`` (the seq it was linked from) to the chain's new one."""
    if chain.registered:
        c = CHAINS.c
        moved = conn.execute(
            update(CHAINS)
            .where(c.chain_id == chain.chain_id, c.last_seq == read)
            .values(last_seq=chain.seq, head_hash=chain.head)
        )
        if moved.rowcount != 1:
            raise HeadMoved(f"audit chain {chain.chain_id} moved past seq {read}")
        return
    conn.execute(
        insert(CHAINS).values(
            chain_id=chain.chain_id,
            kind=chain.kind.value,
            algorithm=chain.key.algorithm,
            key_id=chain.key.key_id,
            host=chain.host,
            pid=chain.pid,
            started_at=chain.started_at,
            last_seq=chain.seq,
            head_hash=chain.head,
        )
    )
