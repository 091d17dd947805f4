"""What runs beside the audit writer in a gateway process, each on its own thread.

* the anchor publisher (``audit.read.anchors``): signed chain heads every ``interval_s`` and at
  shutdown;
* retention (``audit.read.erasure.apply_retention``): texts past ``audit.retention_days`` erased,
  records past ``audit.prune_days`` pruned, every ``retention_interval_s``;
* the syslog stream (``audit.read.siem``): committed requests as OCSF events over RFC 5424.

None of it is on the request path; each part logs its failures and tries again later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine

log = logging.getLogger("warden.audit")


class _Config(Protocol):
    @property
    def audit(self) -> Any: ...

    def resolve(self, path: str) -> Path: ...


class Periodic:
    """Calls ``job`` every ``interval_s`` on a daemon thread until closed."""

    def __init__(self, name: str, interval_s: float, job: Callable[[], object]) -> None:
        self._job = job
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._job()
            except Exception:
                log.exception("audit: %s failed; trying again in %ss", self._thread.name, self._interval)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass
class AuditServices:
    closers: list[Callable[[], None]] = field(default_factory=list)

    @staticmethod
    def start(engine: Engine, config: _Config) -> AuditServices:
        out = AuditServices()
        audit = config.audit
        if audit.syslog is not None:
            from audit.read.siem import SyslogStream

            stream = SyslogStream(engine, audit.syslog)
            out.closers.append(stream.close)
        if audit.retention_days is not None or audit.prune_days is not None:
            from audit.read.erasure import apply_retention

            def retention() -> None:
                apply_retention(engine, audit.retention_days, prune_days=audit.prune_days)

            out.closers.append(Periodic("warden-audit-retention", audit.retention_interval_s, retention).close)
        if audit.anchors is not None:
            from audit.read.anchors import AnchorPublisher

            publisher = AnchorPublisher.from_settings(engine, audit.anchors, config.resolve)
            publisher.start()
            # Last in the list, so it runs last at close: the final heads include everything.
            out.closers.append(publisher.close)
        return out

    def close(self) -> None:
        for close in self.closers:
            try:
                close()
            except Exception:
                log.exception("audit: stopping a service failed")
