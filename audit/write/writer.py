"""The audit writer: takes records off the request path and makes them durable.

``submit`` never waits on the database: it puts the record on a bounded queue, or, when the
queue is full (the database is far behind), appends it to the spool file itself. A
background thread takes up to ``batch_size`` items or whatever arrived within
``batch_interval_s`` and normalizes them (``audit.write.prepared``); a second one commits each batch
in one transaction (``audit.write.store``), so preparing the next batch overlaps the database's
work on this one. Batches that pile up meanwhile are committed together (fewer fsyncs).

With a ``sink`` (the broker, ``audit.write.broker``) batches are published there instead of committed,
with the same spool behind it.

When a commit fails because the database is unreachable, locked or slow, the batch goes to
the spool (fsynced), and so does everything after it, in order, until a retry (with backoff)
replays the spool completely; then writing goes straight to the database again. Replays are
idempotent on ``request_id``. At start the writer also takes over spool files left by writers
that died. A record the database refuses (a conflict or invalid data) goes to
``rejected-<chain>.jsonl`` in the spool folder, never silently away.

Durability: ``flush()`` returns when everything submitted before it is in the database or
the spool; a record that is in the spool survives SIGKILL.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from audit.chain import Chain, ChainKey
from audit.db import make_engine
from audit.record import AuditRecord, ChainKind, Ruling
from audit.review import ReviewRecord
from audit.write.bulk import prepare_rows
from audit.write.prepared import Prepared, prepare
from audit.write.spool import Spool, dead_letter, orphans
from audit.write.store import BatchOutcome, Rejected, Unavailable, commit_batch

log = logging.getLogger("warden.audit")

Item = AuditRecord | ReviewRecord
_STOP: Final = object()
#: at most this many prepared batches are committed together when they have piled up
_MERGE_BATCHES: Final = 4


class Sink(Protocol):
    """Somewhere else batches can go (``audit.write.broker.Publisher``)."""

    def send(self, items: Sequence[Prepared]) -> None:
        """Return once all are durable there; raise ``audit.write.store.Unavailable`` otherwise."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ReplayResult:
    files_replayed: int
    #: held by a running writer, which replays them itself
    files_busy: int
    #: the database went away during the replay; they are left for next time
    files_failed: int
    inserted: int
    duplicates: int
    rejected: int


@dataclass(frozen=True, slots=True)
class WriterStats:
    accepted: int
    durable: int
    committed: int
    spooled: int
    replayed: int
    duplicates: int
    rejected: int
    queue_depth: int
    spool_pending: bool
    db_available: bool


class AuditWriter:
    def __init__(
        self,
        url_or_engine: str | URL | Engine,
        *,
        spool_dir: Path,
        queue_size: int = 10_000,
        batch_size: int = 500,
        batch_interval_s: float = 0.05,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
        key: ChainKey | None = None,
        chain_id: str | None = None,
        sink: Sink | None = None,
    ) -> None:
        """``chain_id``: None for a new chain per start, or a fixed id to continue (see ``audit.chain``).

        ``sink``: where batches go instead of the database (``audit.write.broker.Publisher``): the
        records are then linked by the writer processes that drain it, and "committed" counts
        records the sink acknowledged. The spool stays the fallback while the sink is down.
        """
        self.sink = sink
        self._own_engine = not isinstance(url_or_engine, Engine)
        self.engine = url_or_engine if isinstance(url_or_engine, Engine) else make_engine(url_or_engine)
        self.spool_dir = spool_dir
        self._dialect = self.engine.dialect.name
        key = key if key is not None else ChainKey.from_env()
        self.requests_chain = Chain.new(ChainKind.requests, key, chain_id=chain_id)
        self.reviews_chain = Chain.new(ChainKind.reviews, key, chain_id=chain_id and f"{chain_id}.reviews")
        self.spool_path = spool_dir / f"spool-{self.requests_chain.chain_id}.jsonl"
        self.rejected_path = spool_dir / f"rejected-{self.requests_chain.chain_id}.jsonl"
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._interval = batch_interval_s
        self._retry_initial, self._retry_max = retry_initial_s, retry_max_s
        self._retry_delay = retry_initial_s
        self._retry_at = 0.0
        self._down = False
        self._spool: Spool | None = None
        self._held: list[Prepared] = []
        #: prepared batches between the two threads; a few batches deep, so memory stays bounded
        self._ready: queue.Queue[object] = queue.Queue(maxsize=4)
        self._thread: threading.Thread | None = None
        self._prep_thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._accepted = self._durable = 0
        self._committed = self._spooled = self._replayed = self._duplicates = self._rejected = 0
        self._closed = False

    # -- the request side -------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._spool = Spool(self.spool_path)
        self._prep_thread = threading.Thread(target=self._prepare_loop, name="warden-audit-prepare", daemon=True)
        self._thread = threading.Thread(target=self._run, name="warden-audit-writer", daemon=True)
        self._prep_thread.start()
        self._thread.start()

    def submit(self, record: AuditRecord) -> int:
        """Hand over a finished request's record; returns at once, never raises on DB trouble.
        Returns its ticket: the record is durable once ``durable_count`` reaches it."""
        return self._submit(record)

    @property
    def durable_count(self) -> int:
        """How many submitted items are durable (database or spool), in submission order."""
        return self._durable

    def submit_review(self, request_id: str, reviewer: str, ruling: Ruling | str, note: str = "") -> ReviewRecord:
        review = ReviewRecord(request_id=request_id, reviewer=reviewer, ruling=Ruling(ruling), note=note)
        self._submit(review)
        return review

    def _submit(self, item: Item) -> int:
        if self._closed or self._spool is None:
            raise RuntimeError("AuditWriter is not running (call start(), and not after close())")
        with self._cond:
            self._accepted += 1
            ticket = self._accepted
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._overflow(item)
        return ticket

    def _overflow(self, item: Item) -> None:
        # The writer is far behind: one fsynced append here beats dropping the record.
        assert self._spool is not None
        try:
            self._spool.append([prepare(item)])
            self._count(durable=1, spooled=1)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            dead_letter(self.rejected_path, None, item, f"invalid record: {exc}")
            self._count(durable=1, rejected=1)

    def flush(self, timeout: float = 10.0, *, include_spool: bool = False) -> bool:
        """Wait until everything submitted so far is durable (database or spool).

        With ``include_spool`` also wait until the spool has been replayed into the database.
        Returns False on timeout.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._accepted
            if include_spool:
                self._retry_at = 0.0

            def done() -> bool:
                if self._durable < target:
                    return False
                return not include_spool or not (self._down or (self._spool and self._spool.pending))

            while not done():
                left = deadline - time.monotonic()
                if left <= 0 or not self._running():
                    return done()
                self._cond.wait(min(left, 0.05))
            return True

    def _running(self) -> bool:
        threads = (self._thread, self._prep_thread)
        return all(t is not None and t.is_alive() for t in threads)

    def close(self, timeout: float = 10.0) -> None:
        """Write out what is queued (to the database, or the spool if it is down) and stop."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None and self._prep_thread is not None:
            deadline = time.monotonic() + timeout
            try:
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                log.error("audit writer did not drain its queue within %ss", timeout)
            self._prep_thread.join(max(deadline - time.monotonic(), 0.1))
            self._thread.join(max(deadline - time.monotonic(), 0.1))
            if self._held:
                log.error("audit: %d records could be written neither to the database nor the spool", len(self._held))
        if self._spool is not None:
            self._spool.close()
        if self.sink is not None:
            self.sink.close()
        if self._own_engine:
            self.engine.dispose()

    @property
    def stats(self) -> WriterStats:
        with self._cond:
            return WriterStats(
                accepted=self._accepted,
                durable=self._durable,
                committed=self._committed,
                spooled=self._spooled,
                replayed=self._replayed,
                duplicates=self._duplicates,
                rejected=self._rejected,
                queue_depth=self._queue.qsize(),
                spool_pending=bool(self._spool and self._spool.pending),
                db_available=not self._down,
            )

    # -- the writer thread ------------------------------------------------------------------

    def _prepare_loop(self) -> None:
        """Thread 1: batches off the queue, normalized and serialized (pure Python work)."""
        while True:
            raw, stop = self._next_batch()
            if raw:
                try:
                    self._ready.put(self._prepare(raw))
                except Exception:  # e.g. the rejected file is not writable: keep the thread alive
                    log.exception("audit writer: could not prepare a batch of %d", len(raw))
            if stop:
                rest: list[object] = []
                while True:
                    try:
                        obj = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if obj is not _STOP:
                        rest.append(obj)
                for i in range(0, len(rest), self._batch_size):
                    self._ready.put(self._prepare(rest[i : i + self._batch_size]))
                self._ready.put(_STOP)
                return

    def _run(self) -> None:
        """Thread 2: the database (or the spool). Its waits on the database release the GIL,
        so thread 1 prepares the next batch meanwhile."""
        self._take_over_orphans()
        while True:
            wait = self._interval if (self._down or self._held or self._spool_pending()) else 0.25
            try:
                obj = self._ready.get(timeout=wait)
            except queue.Empty:
                obj = []  # nothing new: still a chance to retry the database
            if obj is _STOP:
                self._final_drain()
                return
            items: list[Prepared] = obj  # type: ignore[assignment]
            stop = False
            # Batches that piled up while the last commit ran go in one transaction: a commit
            # costs an fsync (tens of ms on some disks), so under load they must be fewer.
            while items and len(items) < self._batch_size * _MERGE_BATCHES and not stop:
                try:
                    more = self._ready.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                else:
                    items = items + more  # type: ignore[operator]
            try:
                self._process(items)
            except Exception:  # e.g. the spool's disk failed: log, and keep the thread alive
                log.exception("audit writer: unexpected error")
            if stop:
                self._final_drain()
                return

    def _prepare(self, raw: Sequence[object]) -> list[Prepared]:
        items: list[Prepared] = []
        for obj in raw:
            try:
                item = prepare(obj)  # type: ignore[arg-type]
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                dead_letter(self.rejected_path, None, obj, f"invalid record: {exc}")
                self._count(durable=1, rejected=1)
                continue
            # Rows here rather than in the transaction: this thread works while the other
            # waits on the database.
            if self.sink is None:
                prepare_rows((item,), self._dialect)
            items.append(item)
            # Hand the interpreter lock over after each record (~0.1 ms): a request waiting
            # for it would otherwise wait up to the 5 ms switch interval behind a batch. Not
            # time.sleep(0): that sleeps out the kernel's timer slack, ~50 us per record here.
            os.sched_yield()
        return items

    def _next_batch(self) -> tuple[list[object], bool]:
        batch: list[object] = []
        try:
            first = self._queue.get(timeout=0.25)
        except queue.Empty:
            return batch, False
        if first is _STOP:
            return batch, True
        batch.append(first)
        deadline = time.monotonic() + self._interval
        while len(batch) < self._batch_size:
            try:
                obj = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    obj = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if obj is _STOP:
                return batch, True
            batch.append(obj)
        return batch, False

    def _spool_pending(self) -> bool:
        return bool(self._spool and self._spool.pending)

    def _process(self, items: list[Prepared]) -> None:
        if self._held:
            items, self._held = self._held + items, []
        if self._down or self._spool_pending():
            # Keep order: nothing overtakes what is already waiting in the spool.
            if items:
                self._to_spool(items)
            if time.monotonic() >= self._retry_at:
                try:
                    self._replay_own()
                except Exception as exc:  # a bug, not an outage: keep everything in the spool
                    log.exception("audit writer: replaying the spool failed")
                    self._mark_down(exc)
            return
        if items:
            try:
                self._commit(items, replay=False)
            except Exception as exc:
                log.exception("audit writer: unexpected error; spooling the batch")
                self._mark_down(exc)
                self._to_spool(items)  # replay skips any that did get committed

    def _commit(self, items: Sequence[Prepared], *, replay: bool) -> bool:
        """Commit, isolating refused records. False if the database is down; outside a replay
        the items have then gone to the spool."""
        try:
            if self.sink is not None:
                self.sink.send(items)
                self._settle(BatchOutcome(inserted=len(items)), replay=replay)
                return True
            # Off the queue, a record cannot be stored yet: only replays need the id lookup.
            outcome = commit_batch(self.engine, self.requests_chain, self.reviews_chain, items, dedupe=replay)
        except Unavailable as exc:
            self._mark_down(exc)
            if not replay:
                self._to_spool(items)
            return False
        except Rejected as exc:
            if len(items) == 1:
                dead_letter(self.rejected_path, None, items[0], f"refused by the database: {exc}")
                self._count(durable=0 if replay else 1, rejected=1)
                return True
            for n, item in enumerate(items):
                if not self._commit([item], replay=replay):
                    if not replay:
                        self._to_spool(items[n + 1 :])
                    return False
            return True
        self._settle(outcome, replay=replay)
        return True

    def _settle(self, outcome: BatchOutcome, *, replay: bool) -> None:
        for item in outcome.conflicts:
            dead_letter(self.rejected_path, None, item, "a different record with this id is stored")
        n = outcome.inserted + outcome.duplicates + len(outcome.conflicts)
        self._count(
            durable=0 if replay else n,
            committed=outcome.inserted,
            replayed=outcome.inserted if replay else 0,
            duplicates=outcome.duplicates,
            rejected=len(outcome.conflicts),
        )

    def _to_spool(self, items: Sequence[Prepared]) -> None:
        assert self._spool is not None
        if not items:
            return
        try:
            self._spool.append(items)
        except OSError:
            # Neither the database nor the disk takes them: hold them in memory and retry.
            log.exception("audit spool %s not writable; holding records in memory", self._spool.path)
            self._held.extend(items)
            return
        self._count(durable=len(items), spooled=len(items))

    def _mark_down(self, exc: Exception) -> None:
        if not self._down:
            log.warning("audit database unavailable, spooling to %s: %s", self.spool_path, exc)
        self._down = True
        self._retry_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self._retry_max)

    def _replay_own(self) -> None:
        assert self._spool is not None
        if self._replay(self._spool, own=True):
            if self._down:
                log.warning("audit database back; spool replayed")
            self._down = False
            self._retry_delay = self._retry_initial
            self._take_over_orphans()

    def _replay(self, spool: Spool, *, own: bool, progress: Callable[[int], None] | None = None) -> bool:
        """Replay ``spool`` from its offset; True once it is empty, False if the DB went away.

        ``progress`` is told the number of spool lines handled after each batch."""
        while True:
            entries = list(spool.read(self._batch_size))
            if not entries:
                if spool.truncate_if_done() if own else True:
                    return True
                continue
            items: list[Prepared] = []
            for e in entries:
                if e.item is None:
                    dead_letter(self.rejected_path, e.raw, None, f"unreadable spool line: {e.error}")
                    self._count(rejected=1)
                else:
                    items.append(e.item)
            if items and not self._commit(items, replay=True):
                return False
            spool.advance(entries[-1].end)
            if progress is not None:
                progress(len(entries))
            with self._cond:
                self._cond.notify_all()

    def _take_over_orphans(self) -> None:
        self.replay_files(orphans(self.spool_dir, own=self.spool_path))

    def replay_files(self, paths: Sequence[Path], progress: Callable[[int], None] | None = None) -> ReplayResult:
        """Replay spool files of writers that are gone (used at start and by the CLI); ``progress``
        is told how many spooled records were handled so far."""
        before = self.stats
        replayed = busy = failed = handled = 0

        def handle(n: int) -> None:
            nonlocal handled
            handled += n
            if progress is not None:
                progress(handled)

        for path in paths:
            spool = Spool.try_take_over(path)
            if spool is None:
                busy += path.exists()
                continue
            try:
                done = self._replay(spool, own=False, progress=handle)
            except Exception:
                log.exception("audit: replaying %s failed", path)
                done = False
            if not done:
                spool.close(remove_if_empty=False)
                failed += 1
                continue
            log.warning("audit: replayed spool %s left by a stopped writer", path)
            spool.remove()
            replayed += 1
        after = self.stats
        return ReplayResult(
            files_replayed=replayed,
            files_busy=busy,
            files_failed=failed,
            inserted=after.replayed - before.replayed,
            duplicates=after.duplicates - before.duplicates,
            rejected=after.rejected - before.rejected,
        )

    def _final_drain(self) -> None:
        """At close: write what is held back, then try once more to empty the spool."""
        if self._held:
            self._process([])
        if self._spool_pending() and not self._down:
            self._replay_own()

    def _count(
        self,
        *,
        durable: int = 0,
        committed: int = 0,
        spooled: int = 0,
        replayed: int = 0,
        duplicates: int = 0,
        rejected: int = 0,
    ) -> None:
        with self._cond:
            self._durable += durable
            self._committed += committed
            self._spooled += spooled
            self._replayed += replayed
            self._duplicates += duplicates
            self._rejected += rejected
            self._cond.notify_all()


def replay_spool(
    url_or_engine: str | URL | Engine,
    spool_path: Path,
    *,
    key: ChainKey | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Replay one spool file, or every unlocked ``spool-*.jsonl`` in a folder, into the database.

    Files held by a running writer are left alone (it replays them itself). Replaying twice
    inserts nothing the second time.
    """
    folder = spool_path if spool_path.is_dir() else spool_path.parent
    paths = orphans(spool_path) if spool_path.is_dir() else [spool_path]
    writer = AuditWriter(url_or_engine, spool_dir=folder, key=key)
    try:
        return writer.replay_files(paths, progress)
    finally:
        writer.close()
