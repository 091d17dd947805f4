"""Where a finished request's audit record goes: the audit writer, started off the start-up path.

Importing SQLAlchemy and psycopg, opening the database and checking its schema take a second
or more; none of it is needed to answer a request. ``BackgroundAudit`` starts the writer in a
thread. Records finished before it is up wait in memory, in order, and go to the writer first
(a record in the writer's own queue is in memory too: durability starts at the spool either
way). If the database cannot be used (a PostgreSQL schema behind this Warden, say), the error is
logged and ``/health`` answers 503 with it, so an orchestrator stops routing to this gateway;
the writer runs anyway and keeps records in its spool until the database takes them. Only if
the writer itself cannot be made (an invalid URL) do records stay in memory, up to a bound,
past which ``submit`` waits.

With ``audit.ack: durable`` the gateway holds each answer (a non-streamed body, a stream's
``[DONE]``) until its record is durable (``durable``): then no answer a client received can
lose its record to a crash, at the cost of the writer's batch interval (~50 ms) per request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any, Literal

from audit.record import AuditRecord
from gateway.config import GatewayConfig
from gateway.warmup import WARMUP

log = logging.getLogger("warden.audit")

State = Literal["off", "starting", "ready", "failed"]


class NullSink:
    """Auditing switched off in the config: records are counted in metrics only."""

    state: State = "off"
    error: str | None = None
    engine: Any = None

    def start(self) -> None: ...

    def writer_stats(self) -> Any:
        return None

    def submit(self, record: AuditRecord) -> None: ...

    async def durable(self, request_id: str, within_s: float) -> bool:
        return True

    def close(self) -> None: ...


class BackgroundAudit:
    #: seconds between looks at a database that could not be used
    recheck_s: float = 5.0

    def __init__(self, config: GatewayConfig, *, max_pending: int = 10_000) -> None:
        self._config = config
        self._writer: Any = None
        #: what runs beside the writer: the anchor publisher, retention (``audit.read.services``)
        self._services: Any = None
        #: the services could not start (a bad anchor key): /health stays failed
        self._services_failed = False
        self._pending: deque[AuditRecord] = deque()
        #: request id -> writer ticket, kept only when answers wait for their record (ack: durable)
        self._tickets: dict[str, int] = {}
        self._track = config.audit.ack == "durable"
        self._max_pending = max_pending
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._started = False  # the writer runs, or could not be made
        self._stopping = threading.Event()
        self.state: State = "starting"
        self.error: str | None = None

    @property
    def engine(self) -> Any:
        """The audit database's engine once the writer runs (reads of ``/v1/audit``), else None."""
        return None if self._writer is None else self._writer.engine

    def start(self) -> None:
        self._thread = threading.Thread(target=self._start, name="warden-audit-start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        schema_ok = False
        try:
            with WARMUP.running():
                schema_ok = self._make_writer()
        finally:
            with self._cond:
                self._started = True
                self._cond.notify_all()
        if self._writer is not None and not schema_ok:
            self._watch_schema(self._writer.engine)

    def _make_writer(self) -> bool:
        """Start the writer; whether its database can be used."""
        try:
            from audit.write.writer import AuditWriter

            config = self._config
            sink = None
            if config.audit.broker is not None:
                from audit.write.broker import Publisher

                sink = Publisher(config.audit.broker)
            writer = AuditWriter(
                config.resolved_database_url(),
                spool_dir=config.resolve(config.audit.spool_dir),
                chain_id=config.audit.chain_id,
                batch_size=config.audit.batch_size,
                sink=sink,
            )
        except Exception as exc:
            self._fail(exc, "records wait in memory")
            return False
        schema_ok = self._check_schema(writer.engine)
        writer.start()
        with self._cond:
            while self._pending:
                self._ticket(self._pending.popleft(), writer)
            self._writer = writer
            if schema_ok:
                self.state = "ready"
            self._cond.notify_all()
        try:
            from audit.read.services import AuditServices

            self._services = AuditServices.start(writer.engine, config)
        except Exception as exc:  # an unreadable anchor key: say so loudly (/health), keep auditing
            self._fail(exc, "records are still written, but chain heads are not published")
            self._services_failed = True
        return schema_ok

    def _watch_schema(self, engine: Any) -> None:
        """Look again now and then until the database can be used (the server is back,
        `warden db upgrade` ran): the writer replays its spool by itself, /health recovers."""
        while not self._stopping.wait(self.recheck_s):
            if self._check_schema(engine, quiet=True):
                if self._services_failed:
                    return
                log.info("audit database usable again")
                with self._cond:
                    self.state, self.error = "ready", None
                    self._cond.notify_all()
                return

    def _check_schema(self, engine: Any, *, quiet: bool = False) -> bool:
        from audit.db import ensure_schema

        try:
            # SQLite upgrades itself; a PostgreSQL schema behind this Warden raises, naming
            # the command to run (upgrading a shared database is an operator's decision).
            ensure_schema(engine)
        except Exception as exc:
            # The writer still runs: its inserts fail, and records go to its spool, which it
            # replays once the database can take them.
            if not quiet:
                self._fail(exc, "records go to the spool until it can be written")
            return False
        return True

    def _fail(self, exc: Exception, then: str) -> None:
        log.error("audit database not usable (%s); %s: %s", then, type(exc).__name__, exc)
        with self._cond:
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            self._cond.notify_all()

    def submit(self, record: AuditRecord) -> None:
        writer = self._writer
        if writer is None:
            with self._cond:
                # Never drop a record: past the bound, the request waits for the writer.
                while self._writer is None and len(self._pending) >= self._max_pending:
                    self._cond.wait(1.0)
                if self._writer is None:
                    self._pending.append(record)
                    return
                writer = self._writer
        self._ticket(record, writer)

    def _ticket(self, record: AuditRecord, writer: Any) -> None:
        ticket = writer.submit(record)
        if self._track:
            self._tickets[record.request_id] = ticket

    async def durable(self, request_id: str, within_s: float) -> bool:
        """Wait until the record of ``request_id`` is in the database or the fsynced spool.
        Polls the writer's counter (a few ms apart): no thread per waiting request."""
        deadline = time.monotonic() + within_s
        delay = 0.002
        while True:
            ticket = self._tickets.get(request_id)
            writer = self._writer
            if ticket is not None and writer is not None and writer.durable_count >= ticket:
                del self._tickets[request_id]
                return True
            if time.monotonic() >= deadline:
                self._tickets.pop(request_id, None)
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    def writer_stats(self) -> Any:
        """The audit writer's ``WriterStats`` once it runs, else None (for the alerts)."""
        writer = self._writer
        return None if writer is None else writer.stats

    def wait_started(self, timeout: float) -> bool:
        """Wait until the writer runs, or could not be made; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._started, timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        if not self.wait_started(timeout) or self._writer is None:
            return False
        done: bool = self._writer.flush(timeout)
        return done

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)
        if self._writer is not None:
            self._writer.close()
            if self._services is not None:
                self._services.close()  # after the writer: the final heads are published
        elif self._pending:
            log.error("%d audit records were never written: the audit writer could not start", len(self._pending))


def make_sink(config: GatewayConfig) -> NullSink | BackgroundAudit:
    return BackgroundAudit(config) if config.audit.enabled else NullSink()
