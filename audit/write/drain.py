"""A writer process: drains the broker's stream into the database (``warden audit writer``).

Each process owns one request chain and one review chain, like a gateway's own writer
(``audit.chain``): it fetches up to ``batch_size`` messages from the shared durable consumer,
links them into its chain and commits them in one transaction (``audit.write.store``, with the id
lookup on), then acknowledges them. So each chain is gap-free and in commit order, and any
number of writer processes can run side by side without contending.

Exactly once: a record is acknowledged only after its commit, so a writer that dies before the
commit leaves its messages to be delivered again (after ``ack_wait_s``, to any writer), and one
that dies between commit and acknowledgement gets them delivered again too, which the id
lookup turns into duplicates skipped, not records stored twice. A second publish of one record
is dropped by the broker within its duplicate window and by the same lookup after it. Two
writers that get the same message at once (a redelivery while the first is still committing)
collide on the primary key; the loser re-checks and skips it.

While the database is down the batch is retried with backoff and its messages are kept from
redelivery (``in_progress``). A message that is not a record, or a record the database refuses,
goes to ``rejected-<chain>.jsonl`` in ``dead_letter_dir`` and is acknowledged (never lost,
never retried forever).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from audit.chain import Chain, ChainKey
from audit.record import ChainKind
from audit.settings import BrokerSettings
from audit.write.broker import Consumer, Msg
from audit.write.bulk import prepare_rows
from audit.write.prepared import Prepared
from audit.write.spool import dead_letter
from audit.write.store import BatchOutcome, Rejected, Unavailable, commit_batch

log = logging.getLogger("warden.audit")

#: fault injection for tests: exit (as if killed) after this many commits, before acknowledging
CRASH_ENV = "WARDEN_TEST_DRAIN_CRASH_AFTER_COMMITS"


@dataclass(slots=True)
class DrainStats:
    batches: int = 0
    committed: int = 0
    duplicates: int = 0
    rejected: int = 0
    #: ``time.monotonic()`` at the end of the latest commit (0: none yet)
    last_commit: float = 0.0


class Drain:
    def __init__(
        self,
        engine: Engine,
        settings: BrokerSettings,
        *,
        dead_letter_dir: Path,
        key: ChainKey | None = None,
        chain_id: str | None = None,
        batch_size: int = 500,
        retry_max_s: float = 5.0,
    ) -> None:
        key = key if key is not None else ChainKey.from_env()
        self.engine, self.settings, self.batch_size = engine, settings, batch_size
        self._dialect = engine.dialect.name
        self.requests = Chain.new(ChainKind.requests, key, chain_id=chain_id)
        self.reviews = Chain.new(ChainKind.reviews, key, chain_id=chain_id and f"{chain_id}.reviews")
        self.rejected_path = dead_letter_dir / f"rejected-{self.requests.chain_id}.jsonl"
        self.stats = DrainStats()
        self._retry_max = retry_max_s
        crash = os.environ.get(CRASH_ENV)
        self._crash_after = int(crash) if crash else None

    async def run(self, stop: asyncio.Event, *, until_idle: bool = False, fetch_timeout_s: float = 1.0) -> DrainStats:
        """Drain until ``stop`` is set (or, with ``until_idle``, until a fetch comes back empty).

        Two stages overlap: while one batch commits (on a worker thread), the next is fetched
        and parsed into rows here. Commits still run one after the other, in fetch order.
        """
        # the limit is the shared consumer's, for all writers together: room for many of them
        consumer = await Consumer.open(self.settings, max_pending=self.batch_size * 64)
        committing: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                msgs = await consumer.fetch(self.batch_size, fetch_timeout_s)
                items = self._parse(msgs)
                if committing is not None:
                    await committing
                    committing = None
                if not msgs:
                    if until_idle:
                        break
                    continue
                committing = asyncio.create_task(self._batch(consumer, msgs, items))
            if committing is not None:
                await committing
        finally:
            await consumer.close()
        return self.stats

    def _parse(self, msgs: Sequence[Msg]) -> list[Prepared]:
        items: list[Prepared] = []
        for msg in msgs:
            try:
                item = Prepared.from_line(msg.data)
                prepare_rows((item,), self._dialect)
                items.append(item)
            except Exception as exc:  # not a record: keep it, never retry it
                dead_letter(self.rejected_path, msg.data, None, f"unreadable broker message: {exc}")
                self.stats.rejected += 1
        return items

    async def _batch(self, consumer: Consumer, msgs: Sequence[Msg], items: list[Prepared]) -> None:
        delay = 0.1
        while True:
            try:
                await asyncio.to_thread(self._commit, items)
                break
            except Unavailable as exc:
                log.warning("audit writer: database unavailable, retrying in %.1fs: %s", delay, exc)
                for msg in msgs:
                    await msg.in_progress()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
        self.stats.batches += 1
        self.stats.last_commit = time.monotonic()
        if self._crash_after is not None and self.stats.batches >= self._crash_after:
            os._exit(9)  # committed, not acknowledged: what a SIGKILL at the worst moment leaves
        for msg in msgs:
            await msg.ack()
        await consumer.flush()  # the acks are on the wire before the next fetch

    def _commit(self, items: Sequence[Prepared]) -> None:
        if not items:
            return
        try:
            self._settle(commit_batch(self.engine, self.requests, self.reviews, items, dedupe=True))
        except Rejected as exc:
            if len(items) == 1:
                dead_letter(self.rejected_path, None, items[0], f"refused by the database: {exc}")
                self.stats.rejected += 1
                return
            for item in items:  # isolate the refused record; the others go in, in order
                self._commit([item])

    def _settle(self, outcome: BatchOutcome) -> None:
        for item in outcome.conflicts:
            dead_letter(self.rejected_path, None, item, "a different record with this id is stored")
        self.stats.committed += outcome.inserted
        self.stats.duplicates += outcome.duplicates
        self.stats.rejected += len(outcome.conflicts)
