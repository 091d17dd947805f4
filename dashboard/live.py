"""The gateway's live step feed (``GET /v1/audit/live``), followed in a background thread.

One feed per dashboard process, shared by every viewer: it keeps the last ``MAX_EVENTS`` steps
in memory and reconnects with backoff when the gateway goes away. The page only reads
snapshots, so a slow browser never holds up the feed. The reviewer key is sent as a header
and never stored on the object or put into a message.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

MAX_EVENTS = 2000


@dataclass(frozen=True, slots=True)
class LiveEvent:
    request_id: str
    tenant: str
    seq: int
    stage: str
    name: str
    verdict: str
    enforced: bool
    latency_ms: float
    entities: tuple[str, ...]
    text: str | None
    received: float

    @staticmethod
    def parse(raw: dict[str, Any], received: float) -> LiveEvent | None:
        try:
            return LiveEvent(
                request_id=str(raw["request_id"]),
                tenant=str(raw.get("tenant", "")),
                seq=int(raw.get("seq", 0)),
                stage=str(raw.get("stage", "")),
                name=str(raw.get("name", "")),
                verdict=str(raw.get("verdict", "pass")),
                enforced=bool(raw.get("enforced", True)),
                latency_ms=float(raw.get("latency_ms") or 0.0),
                entities=tuple(sorted({str(s.get("entity_type")) for s in raw.get("spans") or []})),
                text=raw.get("text"),
                received=received,
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(slots=True)
class LiveFeed:
    url: str
    key_source: Callable[[], str | None]
    events: deque[LiveEvent] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    status: str = "connecting"
    dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="warden-dashboard-live", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> list[LiveEvent]:
        with self._lock:
            return list(self.events)

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                self._follow()
                delay = 1.0
            except httpx.HTTPStatusError as exc:
                self.status = f"the gateway refused the live feed (HTTP {exc.response.status_code}); check the key"
            except httpx.HTTPError as exc:
                self.status = f"cannot reach the gateway's live feed: {type(exc).__name__}"
            self._stop.wait(delay)
            delay = min(delay * 2, 30.0)

    def _follow(self) -> None:
        headers = {"Accept": "text/event-stream"}
        key = self.key_source()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        timeout = httpx.Timeout(5.0, read=None)
        with httpx.stream("GET", f"{self.url}/v1/audit/live", headers=headers, timeout=timeout) as response:
            response.raise_for_status()
            self.status = "connected"
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if not line.startswith("data: "):
                    continue
                raw = orjson.loads(line[6:])
                if "dropped" in raw:
                    self.dropped += int(raw["dropped"])
                    continue
                event = LiveEvent.parse(raw, time.time())
                if event is not None:
                    with self._lock:
                        self.events.append(event)
