"""Replica heartbeats: each gateway process says, in the database, which policy versions it runs.

Every ``interval_s`` (and at once after a policy reload) the process upserts its row in
``gateway_replicas``: a replica id, host, pid, start time, ``last_seen`` and, per policy file,
the policy's name and version hash. The dashboard reads these rows to show when every replica
has picked up a saved version. A clean stop deletes the row; a replica that died leaves a row
whose ``last_seen`` grows old, and the dashboard counts it as gone after a few intervals.

A database that is down costs the gateway nothing: the beat is skipped (logged once) and
tried again on the next one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
from sqlalchemy import Engine, delete, insert, update
from sqlalchemy.exc import SQLAlchemyError

from audit.models import Base

log = logging.getLogger("warden.gateway")
REPLICAS = Base.metadata.tables["gateway_replicas"]
INTERVAL_S = 5.0
RETRY_S = 1.0

#: policy file name -> {"name": policy name, "version": content hash}
PolicyMap = dict[str, dict[str, str]]


def new_replica_id() -> str:
    return f"{socket.gethostname()[:32]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Heartbeat:
    def __init__(
        self,
        engine: Engine,
        policies: Callable[[], PolicyMap],
        *,
        interval_s: float = INTERVAL_S,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.engine = engine
        #: whether the database may be touched yet: a fresh SQLite file is being created and
        #: switched to WAL by the audit writer, which a second connection can make fail
        self._ready = ready
        self.replica_id = new_replica_id()
        self._policies = policies
        self._interval = interval_s
        self._started = datetime.now(UTC)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="warden-heartbeat", daemon=True)
            self._thread.start()

    def beat_soon(self) -> None:
        """Beat now, not at the next interval (after a policy reload)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(REPLICAS).where(REPLICAS.c.replica_id == self.replica_id))
        except SQLAlchemyError:
            pass  # the row ages out on the dashboard

    def _run(self) -> None:
        while not self._ready() and not self._stop.wait(RETRY_S):
            pass
        while not self._stop.is_set():
            ok = self.beat()
            # until the first beat lands (the schema may still be being created), retry soon
            self._wake.wait(self._interval if ok else min(self._interval, RETRY_S))
            self._wake.clear()

    def beat(self) -> bool:
        now = datetime.now(UTC)
        policies = orjson.dumps(self._policies(), option=orjson.OPT_SORT_KEYS).decode()
        c = REPLICAS.c
        try:
            with self.engine.begin() as conn:
                done = conn.execute(
                    update(REPLICAS).where(c.replica_id == self.replica_id).values(last_seen=now, policies=policies)
                ).rowcount
                if not done:
                    conn.execute(
                        insert(REPLICAS).values(
                            replica_id=self.replica_id,
                            host=socket.gethostname(),
                            pid=os.getpid(),
                            started_at=self._started,
                            last_seen=now,
                            policies=policies,
                        )
                    )
        except SQLAlchemyError as exc:
            if not self._failing:
                log.warning("heartbeat not written (will retry): %s", str(exc).splitlines()[0][:200])
            self._failing = True
            return False
        self._failing = False
        return True
