"""Audit records for a SIEM: OCSF events, written out or streamed as RFC 5424 syslog.

Each request becomes one OCSF 1.3 *API Activity* event (class 6003, category 6 Application
Activity): the gateway is an API, the client key the actor, the endpoint the operation, the
model the service. What Warden decided maps onto OCSF's own fields (``action_id`` allowed or
denied, ``disposition_id``, ``severity_id`` from the verdict, ``status_id`` from the HTTP
status); the rest (verdict, checks that acted, policy version, chain position and hash) goes
under ``unmapped.warden``, as OCSF intends for product-specific data. No text is exported:
a SIEM gets what happened, the audit database keeps what was said.

``SyslogStream`` follows each chain's head and sends every newly committed request once, in
chain order, as one RFC 5424 message whose MSG is the event's JSON.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

import orjson
from sqlalchemy import Engine, select

from audit.read.export import Progress, iter_audit_records
from audit.read.record_filter import RecordFilter
from audit.record import AuditRecord, Verdict
from audit.rows import CHAINS, REQUESTS, load_page
from audit.settings import SyslogSettings
from audit.syslog import INFO, NOTICE, WARNING, SyslogSender, format_message

log = logging.getLogger("warden.audit.read.siem")

OCSF_VERSION = "1.3.0"
API_ACTIVITY = 6003
#: OCSF severity ids: 1 informational, 3 medium, 4 high
_SEVERITY = {
    Verdict.passed: (1, "Informational"),
    Verdict.flag: (3, "Medium"),
    Verdict.redact: (3, "Medium"),
    Verdict.error: (3, "Medium"),
    Verdict.block: (4, "High"),
}
#: OCSF disposition ids: 1 allowed, 2 blocked, 17 logged; redacted and error have no id of
#: their own, so they are "Other" (99) with the name said
_DISPOSITION = {
    Verdict.passed: (1, "Allowed"),
    Verdict.flag: (17, "Logged"),
    Verdict.redact: (99, "Redacted"),
    Verdict.error: (99, "Error"),
    Verdict.block: (2, "Blocked"),
}


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def to_ocsf(r: AuditRecord) -> dict[str, Any]:
    severity_id, severity = _SEVERITY[r.verdict]
    disposition_id, disposition = _DISPOSITION[r.verdict]
    denied = r.verdict is Verdict.block
    acted = sorted({s.name for s in r.steps if s.verdict is not Verdict.passed})
    return {
        "class_uid": API_ACTIVITY,
        "class_name": "API Activity",
        "category_uid": 6,
        "category_name": "Application Activity",
        # a completion is a POST that makes something: OCSF's "Create"
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": API_ACTIVITY * 100 + 1,
        "type_name": "API Activity: Create",
        "time": _ms(r.started_at),
        "end_time": _ms(r.finished_at),
        "duration": None if r.latency_ms is None else int(r.latency_ms),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": 1 if r.http_status < 400 else 2,
        "status": "Success" if r.http_status < 400 else "Failure",
        "status_code": str(r.http_status),
        "status_detail": r.status.value,
        "action_id": 2 if denied else 1,
        "action": "Denied" if denied else "Allowed",
        "disposition_id": disposition_id,
        "disposition": disposition,
        "message": f"{r.endpoint} {r.model_requested}: {r.verdict.value}"
        + (f" by {', '.join(acted)}" if acted else ""),
        "metadata": {
            "version": OCSF_VERSION,
            "uid": r.request_id,
            "correlation_uid": r.trace_id,
            "tenant_uid": r.tenant,
            "log_name": "warden-audit",
            "product": {"name": "Warden", "vendor_name": "Warden", "version": "0.1.0"},
        },
        "actor": {"user": {"uid": r.key_id, "type_id": 3, "type": "Service"}, "app_name": r.tenant},
        "api": {
            "operation": r.endpoint,
            "request": {"uid": r.request_id},
            "response": {"code": r.http_status, "error": r.error},
            "service": {"name": r.model_served or r.model_requested},
        },
        "src_endpoint": {"ip": r.client_addr},
        "cloud": {"provider": "self-hosted"},
        "unmapped": {
            "warden": {
                "verdict": r.verdict.value,
                "checks_acted": acted,
                "policy_name": r.policy_name,
                "policy_version": r.policy_version,
                "model_requested": r.model_requested,
                "stream": r.stream,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "chain_id": r.chain_id,
                "seq": r.seq,
                "hash": r.hash,
            }
        },
    }


def write_ocsf(
    engine: Engine, out: IO[str], filters: RecordFilter | None = None, *, progress: Progress | None = None
) -> int:
    """One OCSF event per line (JSONL)."""
    n = 0
    for record in iter_audit_records(engine, filters):
        out.write(orjson.dumps(to_ocsf(record)).decode())
        out.write("\n")
        n += 1
        if progress is not None:
            progress(n)
    return n


def _severity(r: AuditRecord) -> int:
    return WARNING if r.verdict is Verdict.block else NOTICE if r.verdict is not Verdict.passed else INFO


class SyslogStream:
    """Sends each newly committed request as an OCSF event over syslog, chain by chain."""

    def __init__(self, engine: Engine, settings: SyslogSettings, *, start: bool = True) -> None:
        self.engine = engine
        self.settings = settings
        self.sender = SyslogSender(settings.url)
        # Only what is committed from now on; with the database away, from the first poll on.
        self._seen: dict[str, int] | None = None
        try:
            self._seen = self._heads()
        except Exception as exc:
            log.warning("syslog stream: the audit database is not readable yet (%s)", exc)
        self._stop = threading.Event()
        self.sent = 0
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._loop, name="warden-audit-syslog", daemon=True)
            self._thread.start()

    def _heads(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            q = select(CHAINS.c.chain_id, CHAINS.c.last_seq).where(CHAINS.c.kind == "requests")
            return {c: int(s) for c, s in conn.execute(q)}

    def _new_records(self) -> Iterator[AuditRecord]:
        heads = self._heads()
        if self._seen is None:
            self._seen = heads
            return
        for chain_id, head in sorted(heads.items()):
            seen = self._seen.get(chain_id, 0)
            while seen < head:
                with self.engine.connect() as conn:
                    q = (
                        select(REQUESTS)
                        .where(REQUESTS.c.chain_id == chain_id, REQUESTS.c.seq > seen, REQUESTS.c.seq <= head)
                        .order_by(REQUESTS.c.seq)
                        .limit(500)
                    )
                    rows = list(conn.execute(q).mappings())
                if not rows:
                    break
                for record in load_page(rows):
                    yield record
                    seen = record.seq or seen
                    self._seen[chain_id] = seen

    def poll(self) -> int:
        """Send what was committed since the last poll; the number sent."""
        n = 0
        for record in self._new_records():
            line = orjson.dumps(to_ocsf(record)).decode()
            self.sender.send(
                format_message(
                    line,
                    app_name=self.settings.app_name,
                    msgid="ocsf",
                    facility=self.settings.facility,
                    severity=_severity(record),
                    at=record.started_at,
                )
            )
            n += 1
        self.sent += n
        return n

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.interval_s):
            try:
                self.poll()
            except Exception:
                log.exception("streaming audit records to syslog failed; trying again")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            self.poll()
        finally:
            self.sender.close()
