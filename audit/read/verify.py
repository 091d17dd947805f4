"""Check every chain in the audit database: ``verify(engine) -> VerifyResult``.

Each chain is walked in ``seq`` order from its latest prune checkpoint (or from 1), in pages,
inside one read snapshot. For each record the hash is recomputed from the stored row, its
steps document included verbatim, and compared; its index rows (acted steps, spans) must be
what its steps say; ``prev_hash`` must be the previous record's hash
and ``seq`` must not skip. At the end the chain's stored head (``audit_chains.last_seq`` /
``head_hash``, moved in the same transaction as every batch) must match the last record.

What that catches: an edited record, step or span (hash; an edited, deleted or added index
row: index), a deleted record (gap, or a
shortened tail against the head), an inserted record (hash: the canonical form includes
``chain_id`` and ``seq``, so it cannot be slotted in without re-hashing, which needs the key),
reordered records or steps (hash). Without ``WARDEN_AUDIT_KEY`` someone who can write the
database can rebuild a whole chain, head included; with it they cannot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Table, exists, select

from audit import commitments
from audit.canonical import canonical_review
from audit.chain import GENESIS, HMAC_SHA256, ChainKey, checkpoint_mac, link_hash
from audit.commitments import is_committed
from audit.record import ChainKind
from audit.rows import (
    ACTED,
    CHAINS,
    CHECKPOINTS,
    ERASURES,
    REQUESTS,
    REVIEWS,
    SPANS,
    index_of,
    review_from_row,
    stored_canonical,
    stored_index,
    utc,
)

PAGE = 1000


class ProblemKind(StrEnum):
    hash_mismatch = "hash_mismatch"
    broken_link = "broken_link"
    gap = "gap"
    unreadable = "unreadable"
    missing_tail = "missing_tail"
    beyond_head = "beyond_head"
    unknown_chain = "unknown_chain"
    key_missing = "key_missing"
    key_mismatch = "key_mismatch"
    unkeyed_chain = "unkeyed_chain"
    bad_checkpoint = "bad_checkpoint"
    index_mismatch = "index_mismatch"
    orphan_index = "orphan_index"
    erasure_unrecorded = "erasure_unrecorded"
    anchor_missing = "anchor_missing"
    anchor_mismatch = "anchor_mismatch"
    anchor_invalid = "anchor_invalid"


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    chain_id: str
    seq: int | None
    #: request id (or review id) of the record where the problem shows, if there is one
    record_id: str | None
    message: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    records_checked: int
    reviews_checked: int
    chains_checked: int
    problems: tuple[Problem, ...] = ()
    #: more problems were found than ``max_problems`` kept
    truncated: bool = False
    #: records whose texts were erased (and whose erasure is a verified chained record)
    erased: int = 0
    #: the erasures those records name: "id by WHO at TIME (scope)"
    erasures: tuple[str, ...] = ()

    @property
    def first_bad_id(self) -> str | None:
        return self.problems[0].record_id if self.problems else None

    @property
    def reason(self) -> str | None:
        return self.problems[0].message if self.problems else None


@dataclass(frozen=True, slots=True)
class ChainInfo:
    chain_id: str
    kind: ChainKind
    algorithm: str
    key_id: str | None
    last_seq: int
    head_hash: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class Stored:
    """A chained row as verify checks it."""

    id: str
    seq: int
    prev_hash: str
    hash: str
    #: the canonical bytes its hash covers, as stored
    body: bytes
    #: why its index rows are not what its steps say, if they are not
    index_problem: str | None = None
    #: why its stored texts are not what its hash covers by commitment, if they are not
    text_problem: str | None = None


@dataclass(frozen=True, slots=True)
class ChainSpec:
    """How to walk one kind of chained table."""

    kind: ChainKind
    table: Table
    id_col: str
    load: Callable[[Connection, Sequence[Any]], Iterator[Stored]]


def _load_requests(conn: Connection, rows: Sequence[Any]) -> Iterator[Stored]:
    index = stored_index(conn, [row["request_id"] for row in rows])
    for row in rows:
        body = stored_canonical(row)
        steps = orjson.loads(row["steps"])
        if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            raise ValueError("steps are not a list of objects")
        problem = None
        committed = is_committed(row)
        text_problem = commitments.text_problem(row) if committed else None
        acted, spans = index_of(steps, commitments.parse_texts(row["texts"])[1] if committed else None)
        stored_acted, stored_spans = index[row["request_id"]]
        if acted != stored_acted:
            problem = "its acted-steps index rows do not match its steps"
        elif spans != stored_spans:
            problem = "its span rows do not match its steps"
        yield Stored(row["request_id"], row["seq"], row["prev_hash"], row["hash"], body, problem, text_problem)


def _load_reviews(_conn: Connection, rows: Sequence[Any]) -> Iterator[Stored]:
    for row in rows:
        review = review_from_row(row)
        yield Stored(row["review_id"], row["seq"], row["prev_hash"], row["hash"], canonical_review(review))


def _load_erasures(_conn: Connection, rows: Sequence[Any]) -> Iterator[Stored]:
    for row in rows:
        body = commitments.erasure_canonical(row)
        yield Stored(row["erasure_id"], row["seq"], row["prev_hash"], row["hash"], body)


KINDS = (
    ChainSpec(ChainKind.requests, REQUESTS, "request_id", _load_requests),
    ChainSpec(ChainKind.reviews, REVIEWS, "review_id", _load_reviews),
    ChainSpec(ChainKind.erasures, ERASURES, "erasure_id", _load_erasures),
)


#: how many checked items between two progress reports
PROGRESS_EVERY = 100


@dataclass(slots=True)
class Report:
    max_problems: int
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False
    checked: int = 0
    #: told the running count of checked items now and then (``warden audit verify``'s progress)
    progress: Callable[[int], None] | None = None

    def add(self, kind: ProblemKind, chain_id: str, seq: int | None, rid: str | None, msg: str) -> None:
        if len(self.problems) >= self.max_problems:
            self.truncated = True
            return
        self.problems.append(Problem(kind, chain_id, seq, rid, msg))


def verify(
    engine: Engine,
    *,
    key: ChainKey | None = None,
    max_problems: int = 100,
    progress: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Walk every chain; ``progress`` is told how many records and reviews were checked so far."""
    key = key if key is not None else ChainKey.from_env()
    report = Report(max_problems, progress=progress)
    counts: dict[ChainKind, int] = {}
    chains_checked = 0
    with snapshot(engine) as conn:
        chains = load_chains(conn)
        checkpoints = load_checkpoints(conn, chains, key, report)
        for spec in KINDS:
            before = report.checked
            for chain_id in _chain_ids(conn, spec, chains):
                chains_checked += 1
                walk_chain(conn, spec, chain_id, chains.get(chain_id), checkpoints.get(chain_id), key, report)
            counts[spec.kind] = report.checked - before
        find_orphans(conn, report)
        erased, erasures = check_erased(conn, report)
    if progress is not None:
        progress(report.checked)
    return VerifyResult(
        ok=not report.problems and not report.truncated,
        records_checked=counts[ChainKind.requests],
        reviews_checked=counts[ChainKind.reviews],
        chains_checked=chains_checked,
        problems=tuple(report.problems),
        truncated=report.truncated,
        erased=erased,
        erasures=erasures,
    )


def check_erased(conn: Connection, report: Report) -> tuple[int, tuple[str, ...]]:
    """Every erased record must be named by a stored erasure record (whose chain is walked
    like the others): an erasure nobody recorded is tampering. Returns the count and the
    erasures, described."""
    wanted: dict[str, list[tuple[str, str, int]]] = {}
    q = select(REQUESTS.c.request_id, REQUESTS.c.erasure_id, REQUESTS.c.chain_id, REQUESTS.c.seq).where(
        REQUESTS.c.erasure_id.is_not(None)
    )
    count = 0
    for rid, eid, chain_id, seq in conn.execute(q):
        wanted.setdefault(eid, []).append((rid, chain_id, seq))
        count += 1
    described: list[str] = []
    if not wanted:
        return 0, ()
    found = {r.erasure_id: r for r in conn.execute(select(ERASURES).where(ERASURES.c.erasure_id.in_(list(wanted))))}
    for eid, items in sorted(wanted.items()):
        row = found.get(eid)
        listed: set[str] = set(orjson.loads(row.request_ids)) if row is not None else set()
        for rid, chain_id, seq in items:
            if rid not in listed:
                report.add(
                    ProblemKind.erasure_unrecorded, chain_id, seq, rid,
                    f"chain {chain_id} seq {seq} ({rid}): its texts were erased, but no erasure record "
                    f"{'exists' if row is None else 'names it'} ({eid})",
                )  # fmt: skip
        if row is not None:
            at = utc(row.at)
            described.append(
                f"{eid} by {row.actor} at {at:%Y-%m-%d %H:%M:%S}Z ({row.scope} {row.selector}): {len(items)} records"
            )
    return count, tuple(described)


def find_orphans(conn: Connection, report: Report) -> None:
    """Index rows whose request is not stored (they have no foreign key, see ``audit.models``)."""
    for table, what in ((ACTED, "acted-step"), (SPANS, "span")):
        stored = exists().where(REQUESTS.c.request_id == table.c.request_id)
        q = select(table.c.request_id).where(~stored).distinct().order_by(table.c.request_id)
        for rid in conn.execute(q.limit(report.max_problems)).scalars():
            report.add(
                ProblemKind.orphan_index, "", None, rid,
                f"{what} index rows for request {rid}, which is not stored",
            )  # fmt: skip


def snapshot(engine: Engine) -> Connection:
    """One consistent read view: records and chain heads as of one moment."""
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    conn.begin()
    return conn


def load_chains(conn: Connection) -> dict[str, ChainInfo]:
    return {
        r.chain_id: ChainInfo(r.chain_id, ChainKind(r.kind), r.algorithm, r.key_id, r.last_seq, r.head_hash)
        for r in conn.execute(select(CHAINS))
    }


def load_checkpoints(
    conn: Connection, chains: dict[str, ChainInfo], key: ChainKey, report: Report
) -> dict[str, Checkpoint]:
    """The latest valid checkpoint of each chain; forged ones are reported and ignored."""
    out: dict[str, Checkpoint] = {}
    for r in conn.execute(select(CHECKPOINTS).order_by(CHECKPOINTS.c.chain_id, CHECKPOINTS.c.seq)):
        chain = chains.get(r.chain_id)
        ckey = key_for(chain, key) if chain is not None else key
        before = utc(r.pruned_before)
        assert before is not None
        if ckey is None or checkpoint_mac(ckey, r.chain_id, r.seq, r.hash, before) != r.mac:
            report.add(
                ProblemKind.bad_checkpoint, r.chain_id, r.seq, None,
                f"checkpoint at seq {r.seq} of chain {r.chain_id} does not verify",
            )  # fmt: skip
            continue
        out[r.chain_id] = Checkpoint(r.seq, r.hash)
    return out


def _chain_ids(conn: Connection, spec: ChainSpec, chains: dict[str, ChainInfo]) -> list[str]:
    in_table = set(conn.execute(select(spec.table.c.chain_id).distinct()).scalars())
    registered = {c for c, info in chains.items() if info.last_seq > 0 and info.kind == spec.kind}
    return sorted(in_table | registered)


def key_for(chain: ChainInfo, key: ChainKey) -> ChainKey | None:
    """The key this chain must be checked with, or None when it cannot be checked."""
    if chain.algorithm != HMAC_SHA256:
        return ChainKey(None, None)
    if key.secret is None or key.key_id != chain.key_id:
        return None
    return key


def walk_chain(
    conn: Connection,
    spec: ChainSpec,
    chain_id: str,
    chain: ChainInfo | None,
    checkpoint: Checkpoint | None,
    key: ChainKey,
    report: Report,
    *,
    upto: int | None = None,
) -> None:
    """Check one chain from its checkpoint to its end (or to ``upto``)."""
    ckey = key
    if chain is None:
        report.add(ProblemKind.unknown_chain, chain_id, None, None, f"chain {chain_id} is not registered")
    else:
        if chain.algorithm != HMAC_SHA256 and key.secret is not None:
            report.add(
                ProblemKind.unkeyed_chain, chain_id, None, None,
                f"chain {chain_id} is hashed without a key although WARDEN_AUDIT_KEY is set",
            )  # fmt: skip
        found = key_for(chain, key)
        if found is None:
            kind = ProblemKind.key_missing if key.secret is None else ProblemKind.key_mismatch
            report.add(
                kind, chain_id, None, None,
                f"chain {chain_id} was written with audit key {chain.key_id}; "
                f"{'WARDEN_AUDIT_KEY is not set' if key.secret is None else 'a different key is set'}",
            )  # fmt: skip
            return
        ckey = found
    expected = checkpoint.seq + 1 if checkpoint else 1
    prev = checkpoint.hash if checkpoint else GENESIS
    last_seq = expected - 1
    for item in _items(conn, spec, chain_id, expected - 1, upto, report):
        report.checked += 1
        if report.progress is not None and report.checked % PROGRESS_EVERY == 0:
            report.progress(report.checked)
        rid, seq = item.id, item.seq
        if seq != expected:
            report.add(
                ProblemKind.gap, chain_id, seq, rid,
                f"chain {chain_id}: seq {expected}..{seq - 1} missing before {rid} (seq {seq})",
            )  # fmt: skip
        elif item.prev_hash != prev:
            report.add(
                ProblemKind.broken_link, chain_id, seq, rid,
                f"chain {chain_id} seq {seq} ({rid}): prev_hash is not the previous record's hash",
            )  # fmt: skip
        if link_hash(ckey, item.prev_hash or GENESIS, item.body) != item.hash:
            report.add(
                ProblemKind.hash_mismatch, chain_id, seq, rid,
                f"chain {chain_id} seq {seq} ({rid}): record or its steps changed since written",
            )  # fmt: skip
        elif item.text_problem:
            report.add(
                ProblemKind.hash_mismatch, chain_id, seq, rid,
                f"chain {chain_id} seq {seq} ({rid}): its stored text changed since written: {item.text_problem}",
            )  # fmt: skip
        elif item.index_problem:
            report.add(
                ProblemKind.index_mismatch, chain_id, seq, rid,
                f"chain {chain_id} seq {seq} ({rid}): {item.index_problem}",
            )  # fmt: skip
        prev, expected, last_seq = item.hash or "", seq + 1, seq
    if chain is None or upto is not None:
        return
    if last_seq < chain.last_seq:
        report.add(
            ProblemKind.missing_tail, chain_id, last_seq + 1, None,
            f"chain {chain_id}: records seq {last_seq + 1}..{chain.last_seq} missing at the end",
        )  # fmt: skip
    elif last_seq > chain.last_seq:
        report.add(
            ProblemKind.beyond_head, chain_id, chain.last_seq + 1, None,
            f"chain {chain_id}: records after the chain head (seq {chain.last_seq})",
        )  # fmt: skip
    elif last_seq > 0 and prev != chain.head_hash:
        report.add(
            ProblemKind.hash_mismatch, chain_id, last_seq, None,
            f"chain {chain_id}: last record's hash is not the chain head",
        )  # fmt: skip


def _items(
    conn: Connection, spec: ChainSpec, chain_id: str, after: int, upto: int | None, report: Report
) -> Iterator[Stored]:
    t = spec.table
    while True:
        q = select(t).where(t.c.chain_id == chain_id, t.c.seq > after)
        if upto is not None:
            q = q.where(t.c.seq <= upto)
        rows = list(conn.execute(q.order_by(t.c.seq).limit(PAGE)).mappings())
        if not rows:
            return
        after = rows[-1]["seq"]
        try:
            items = list(spec.load(conn, rows))
        except (ValueError, KeyError, TypeError, AttributeError):
            items = list(_one_by_one(conn, spec, chain_id, rows, report))
        yield from items


def _one_by_one(
    conn: Connection, spec: ChainSpec, chain_id: str, rows: Sequence[Any], report: Report
) -> Iterator[Stored]:
    """A page with an unreadable row: load rows singly to name the bad one."""
    for row in rows:
        try:
            items = list(spec.load(conn, [row]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            report.add(
                ProblemKind.unreadable, chain_id, row["seq"], row[spec.id_col],
                f"chain {chain_id} seq {row['seq']} ({row[spec.id_col]}): unreadable ({exc})",
            )  # fmt: skip
            continue
        yield from items
