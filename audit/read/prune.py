"""Remove old records and keep the chains verifiable: ``prune(engine, before)``.

Per chain, the longest prefix whose records all started before ``before`` is removed (a
chain is ordered by ``seq``, not time, so a slow old request can hold back a few newer ones
until the next prune). First that prefix is verified: a prefix that does not verify is not
pruned, since pruning it would destroy the evidence; it is reported instead. Then a
checkpoint (chain, last pruned ``seq``, its ``hash``, MAC'd under the audit key) is written,
and the records are deleted in small transactions, so writers are never held up for long.
An interrupted prune leaves records at or below the checkpoint, which verify ignores and the
next prune deletes.

On PostgreSQL, where ``audit_requests`` is partitioned by month (``audit.partitions``), a
month that ended before ``before`` and whose every record is at or below its chain's new
checkpoint is dropped whole (its index rows deleted first) instead of deleted row by row; the
rest of the prefix, in the month ``before`` falls in or in a month kept for a straggler, goes
row by row as above. Prune also makes the coming months' partitions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, Connection, Engine, delete, func, insert, select

from audit import partitions
from audit.chain import ChainKey, checkpoint_mac
from audit.db import WRITE_OPTIONS
from audit.partitions import ensure_partitions
from audit.read.verify import (
    KINDS,
    ChainSpec,
    Problem,
    Report,
    key_for,
    load_chains,
    load_checkpoints,
    walk_chain,
)
from audit.rows import ACTED, CHECKPOINTS, REQUESTS, REVIEWS, SPANS, utc

CHUNK = 1000


@dataclass(frozen=True, slots=True)
class PruneResult:
    records_deleted: int
    reviews_deleted: int
    #: (chain_id, seq) of each checkpoint written
    checkpoints: tuple[tuple[str, int], ...]
    #: chains left alone because the part to prune does not verify
    skipped: tuple[Problem, ...]
    #: monthly partitions dropped whole (PostgreSQL)
    partitions_dropped: tuple[str, ...] = ()


def _time_col(spec: ChainSpec) -> Column[datetime]:
    return spec.table.c.started_at if spec.table is REQUESTS else spec.table.c.at


def prune(
    engine: Engine, before: datetime, *, key: ChainKey | None = None, progress: Callable[[int], None] | None = None
) -> PruneResult:
    """``progress`` is told how many records and reviews were deleted so far, after each chunk."""
    key = key if key is not None else ChainKey.from_env()
    cutoff_time = utc(before)
    assert cutoff_time is not None
    deleted = {REQUESTS.name: 0, REVIEWS.name: 0}
    written: list[tuple[str, int]] = []
    skipped: list[Problem] = []
    dropped: list[str] = []
    ensure_partitions(engine)
    for spec in KINDS:
        with engine.connect() as conn:
            plans = _plan(conn, spec, cutoff_time, key, skipped)
        for chain_id, cp_seq, cutoff, hash_, ckey in plans:
            if cutoff > cp_seq:
                _write_checkpoint(engine, ckey, chain_id, cutoff, hash_, cutoff_time, cutoff - cp_seq)
                written.append((chain_id, cutoff))
        if spec.table is REQUESTS:
            deleted[REQUESTS.name] += _drop_months(engine, cutoff_time, key, dropped)
            if progress is not None:
                progress(sum(deleted.values()))
        for chain_id, _cp_seq, cutoff, _hash, _ckey in plans:
            done = sum(deleted.values())
            tell = None if progress is None else (lambda n, done=done: progress(done + n))
            deleted[spec.table.name] = deleted.get(spec.table.name, 0) + _delete_upto(
                engine, spec, chain_id, cutoff, tell
            )
    return PruneResult(
        records_deleted=deleted[REQUESTS.name],
        reviews_deleted=deleted[REVIEWS.name],
        checkpoints=tuple(written),
        skipped=tuple(skipped),
        partitions_dropped=tuple(dropped),
    )


def _drop_months(engine: Engine, before: datetime, key: ChainKey, dropped: list[str]) -> int:
    """Drop the whole months every record of which is covered by a (verified) checkpoint."""
    if engine.dialect.name != "postgresql":
        return 0
    with engine.connect() as conn:
        if not partitions.is_partitioned(conn):
            return 0
        checkpoints = load_checkpoints(conn, load_chains(conn), key, Report(max_problems=0))
        covered = {c: cp.seq for c, cp in checkpoints.items()}
        months = partitions.months_before(conn, before)
    total = 0
    for part in months:
        with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
            count = partitions.drop_if_covered(conn, part, covered)
        if count is not None:
            total += count
            dropped.append(part.name)
    return total


def _plan(
    conn: Connection, spec: ChainSpec, before: datetime, key: ChainKey, skipped: list[Problem]
) -> list[tuple[str, int, int, str, ChainKey]]:
    """(chain, checkpoint seq, new cutoff seq, hash at cutoff, chain's key) per chain to prune."""
    t = spec.table
    chains = load_chains(conn)
    checkpoints = load_checkpoints(conn, chains, key, Report(max_problems=0))
    plans = []
    for chain_id in conn.execute(select(t.c.chain_id).distinct()).scalars():
        cp = checkpoints.get(chain_id)
        cp_seq = cp.seq if cp else 0
        first_recent = conn.execute(
            select(func.min(t.c.seq)).where(t.c.chain_id == chain_id, _time_col(spec) >= before)
        ).scalar()
        last = conn.execute(select(func.max(t.c.seq)).where(t.c.chain_id == chain_id)).scalar()
        cutoff = int(first_recent) - 1 if first_recent is not None else int(last or 0)
        if cutoff <= cp_seq:
            if conn.execute(select(t.c.seq).where(t.c.chain_id == chain_id, t.c.seq <= cp_seq).limit(1)).first():
                plans.append((chain_id, cp_seq, cp_seq, cp.hash if cp else "", key))  # finish a prune
            continue
        report = Report(max_problems=10)
        walk_chain(conn, spec, chain_id, chains.get(chain_id), cp, key, report, upto=cutoff)
        if report.problems:
            skipped.extend(report.problems)
            continue
        chain = chains.get(chain_id)
        ckey = key_for(chain, key) if chain is not None else None
        if ckey is None:
            continue  # walk_chain reported it
        hash_ = conn.execute(select(t.c.hash).where(t.c.chain_id == chain_id, t.c.seq == cutoff)).scalar_one()
        plans.append((chain_id, cp_seq, cutoff, hash_, ckey))
    return plans


def _write_checkpoint(
    engine: Engine, key: ChainKey, chain_id: str, seq: int, hash_: str, before: datetime, count: int
) -> None:
    with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
        conn.execute(
            insert(CHECKPOINTS).values(
                chain_id=chain_id,
                seq=seq,
                hash=hash_,
                pruned_before=before,
                records_pruned=count,
                created_at=datetime.now(UTC),
                mac=checkpoint_mac(key, chain_id, seq, hash_, before),
            )
        )


def _delete_upto(
    engine: Engine, spec: ChainSpec, chain_id: str, seq: int, progress: Callable[[int], None] | None = None
) -> int:
    total = 0
    table = spec.table
    id_col = table.c[spec.id_col]
    while True:
        with engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
            ids: Sequence[str] = (
                conn.execute(
                    select(id_col)
                    .where(table.c.chain_id == chain_id, table.c.seq <= seq)
                    .order_by(table.c.seq)
                    .limit(CHUNK)
                )
                .scalars()
                .all()
            )
            if not ids:
                return total
            if table is REQUESTS:
                conn.execute(delete(SPANS).where(SPANS.c.request_id.in_(ids)))
                conn.execute(delete(ACTED).where(ACTED.c.request_id.in_(ids)))
            conn.execute(delete(table).where(id_col.in_(ids)))
            total += len(ids)
        if progress is not None:
            progress(total)
