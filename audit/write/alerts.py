"""Alerts: a policy's ``alerts:`` rules, sent as signed, batched webhooks off the request path.

``Alerter.observe(record, settings)`` only puts the record on a bounded queue (a full queue
drops the observation and counts it: an alert must never slow or fail a request). A thread
evaluates the rules (``block``, ``flag_rate`` over a sliding window, ``writer_behind`` from
the writer's stats), gathers what fires for ``batch_s`` and POSTs it as one JSON body::

    {"alerts": [{"rule": "block", "at": ..., "policy": ..., "request_id": ..., ...}, ...]}

signed like Stripe's and GitHub's webhooks: ``X-Warden-Timestamp: <unix seconds>`` and
``X-Warden-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``, so a
receiver can reject forged and replayed bodies. A failed POST (connection error or 5xx) is
retried with exponential back-off (``backoff_s`` doubling, ``retries`` times); a 4xx is not
retried. ``send_verify_failed`` is for ``warden audit verify`` (run from cron).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from audit.record import AuditRecord, Verdict
from audit.settings import AlertRule, AlertSettings

log = logging.getLogger("warden.audit.alerts")


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def secret_for(settings: AlertSettings) -> bytes:
    value = os.environ.get(settings.secret_env)
    if not value:
        raise ValueError(f"alerts need an HMAC secret in ${settings.secret_env}")
    return value.encode()


def post(settings: AlertSettings, alerts: list[dict[str, Any]], *, client: httpx.Client | None = None) -> bool:
    """POST one batch, retrying with back-off; True once delivered."""
    body = orjson.dumps({"alerts": alerts}, option=orjson.OPT_UTC_Z)
    secret = secret_for(settings)
    own = client is None
    client = client or httpx.Client(timeout=10.0)
    delay = settings.backoff_s
    try:
        for attempt in range(settings.retries + 1):
            ts = str(int(time.time()))
            headers = {
                "content-type": "application/json",
                "x-warden-timestamp": ts,
                "x-warden-signature": sign(secret, ts, body),
            }
            try:
                response = client.post(settings.webhook_url, content=body, headers=headers)
                if response.status_code < 500:
                    if response.status_code >= 400:
                        log.error("alert webhook refused the batch: HTTP %d", response.status_code)
                        return False
                    return True
                why = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}: {exc}"
            if attempt < settings.retries:
                log.warning("alert webhook failed (%s); retrying in %.1fs", why, delay)
                time.sleep(delay)
                delay *= 2
        log.error("alert webhook failed %d times; %d alerts dropped", settings.retries + 1, len(alerts))
        return False
    finally:
        if own:
            client.close()


def send_verify_failed(settings: AlertSettings, problems: list[str], policy: str) -> bool:
    if not any(r.on == "verify_failed" for r in settings.rules):
        return False
    alert = {"rule": "verify_failed", "at": datetime.now(UTC), "policy": policy, "problems": problems[:20]}
    return post(settings, [alert])


@dataclass
class _Window:
    """Per (policy, check): recent requests and whether the check acted on each."""

    events: deque[tuple[float, bool]] = field(default_factory=deque)
    acted: int = 0
    quiet_until: float = 0.0

    def add(self, now: float, hit: bool, window: float) -> None:
        self.events.append((now, hit))
        self.acted += hit
        while self.events and self.events[0][0] < now - window:
            _, old = self.events.popleft()
            self.acted -= old


class Alerter:
    def __init__(self, *, writer_stats: Callable[[], Any] | None = None, queue_size: int = 10_000) -> None:
        self._queue: queue.Queue[tuple[AuditRecord, AlertSettings]] = queue.Queue(maxsize=queue_size)
        self._writer_stats = writer_stats
        self._windows: dict[tuple[str, str, int], _Window] = {}
        self._pending: dict[AlertSettings, list[dict[str, Any]]] = {}
        self._first: dict[AlertSettings, float] = {}
        self._seen_settings: set[AlertSettings] = set()
        self._behind_quiet: dict[AlertSettings, float] = {}
        self._stop = threading.Event()
        self.dropped = 0
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="warden-alerts", daemon=True)
        self._thread.start()

    def observe(self, record: AuditRecord, settings: AlertSettings | None) -> None:
        """On the request path: never blocks, never raises."""
        if settings is None:
            return
        try:
            self._queue.put_nowait((record, settings))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                record, settings = self._queue.get(timeout=0.2)
            except queue.Empty:
                pass
            else:
                self._evaluate(record, settings, time.monotonic())
            self._check_writer(time.monotonic())
            self._flush_due(time.monotonic(), force=False)
        while True:  # closing: what is queued still counts
            try:
                record, settings = self._queue.get_nowait()
            except queue.Empty:
                break
            self._evaluate(record, settings, time.monotonic())
        self._flush_due(time.monotonic(), force=True)

    def _raise(self, settings: AlertSettings, alert: dict[str, Any], now: float) -> None:
        self._pending.setdefault(settings, []).append(alert)
        self._first.setdefault(settings, now)

    def _evaluate(self, record: AuditRecord, settings: AlertSettings, now: float) -> None:
        self._seen_settings.add(settings)
        base = {"at": datetime.now(UTC), "policy": record.policy_name, "policy_version": record.policy_version}
        acted = {s.name for s in record.steps if s.verdict is not Verdict.passed}
        for i, rule in enumerate(settings.rules):
            if rule.on == "block" and record.verdict is Verdict.block:
                blockers = sorted({s.name for s in record.steps if s.verdict is Verdict.block})
                self._raise(
                    settings,
                    {**base, "rule": "block", "request_id": record.request_id, "tenant": record.tenant,
                     "checks": blockers},
                    now,
                )  # fmt: skip
            elif rule.on == "flag_rate":
                self._flag_rate(settings, i, rule, record, acted, base, now)

    def _flag_rate(
        self,
        settings: AlertSettings,
        i: int,
        rule: AlertRule,
        record: AuditRecord,
        acted: set[str],
        base: dict[str, Any],
        now: float,
    ) -> None:
        name = rule.check or "*"
        window = self._windows.setdefault((record.policy_name, name, i), _Window())
        hit = bool(acted) if rule.check is None else rule.check in acted
        window.add(now, hit, rule.window_s)
        n = len(window.events)
        rate = window.acted / n if n else 0.0
        if n >= rule.min_requests and rate > (rule.threshold or 0.0) and now >= window.quiet_until:
            window.quiet_until = now + rule.window_s  # once per window, not once per request
            self._raise(
                settings,
                {**base, "rule": "flag_rate", "check": name, "rate": round(rate, 4), "requests": n,
                 "threshold": rule.threshold, "window_s": rule.window_s},
                now,
            )  # fmt: skip

    def _check_writer(self, now: float) -> None:
        if self._writer_stats is None:
            return
        for settings in self._seen_settings:
            for rule in settings.rules:
                if rule.on != "writer_behind" or now < self._behind_quiet.get(settings, 0.0):
                    continue
                stats = self._writer_stats()
                if stats is None:
                    continue
                if stats.queue_depth > (rule.threshold or 1000) or stats.spool_pending or not stats.db_available:
                    self._behind_quiet[settings] = now + rule.window_s
                    alert = {"rule": "writer_behind", "at": datetime.now(UTC), "queue_depth": stats.queue_depth,
                             "spooling": stats.spool_pending, "db_available": stats.db_available}  # fmt: skip
                    self._raise(settings, alert, now)

    def _flush_due(self, now: float, *, force: bool) -> None:
        for settings in list(self._pending):
            alerts = self._pending[settings]
            if not force and len(alerts) < settings.max_batch and now - self._first[settings] < settings.batch_s:
                continue
            del self._pending[settings]
            del self._first[settings]
            for i in range(0, len(alerts), settings.max_batch):
                batch = alerts[i : i + settings.max_batch]
                try:
                    if post(settings, batch):
                        self.sent += len(batch)
                except Exception:
                    log.exception("alerts: sending %d alerts failed", len(batch))

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
