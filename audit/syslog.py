"""RFC 5424 syslog messages, sent over UDP or TCP (RFC 6587 octet counting).

One small sender for what leaves the machine as syslog: anchored chain heads and OCSF events
for a SIEM. The standard library's ``SysLogHandler`` speaks the older BSD format (RFC 3164),
which has no structured data, no year and no time zone in its timestamp.
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import UTC, datetime
from urllib.parse import urlsplit

#: RFC 5424 severities used here
INFO, NOTICE, WARNING = 6, 5, 4
_NIL = "-"


def _field(value: str | None, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, or the NIL value."""
    if not value:
        return _NIL
    cleaned = "".join(c if 33 <= ord(c) <= 126 else "_" for c in value)
    return cleaned[:limit]


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_message(
    msg: str,
    *,
    app_name: str = "warden",
    msgid: str | None = None,
    facility: int = 16,
    severity: int = INFO,
    structured: dict[str, dict[str, str]] | None = None,
    at: datetime | None = None,
    hostname: str | None = None,
) -> bytes:
    """``<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG``, MSG in UTF-8 with its BOM."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    stamp = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    sd = _NIL
    if structured:
        sd = "".join(
            f"[{_field(sid, 32)}" + "".join(f' {_field(k, 32)}="{_sd_escape(v)}"' for k, v in params.items()) + "]"
            for sid, params in structured.items()
        )
    header = (
        f"<{facility * 8 + severity}>1 {stamp} {_field(hostname or socket.gethostname(), 255)} "
        f"{_field(app_name, 48)} {os.getpid()} {_field(msgid, 32)} {sd} "
    )
    return header.encode("ascii") + b"\xef\xbb\xbf" + msg.encode("utf-8")


class SyslogSender:
    """Sends messages to ``udp://host:port`` or ``tcp://host:port``; reconnects TCP on failure."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("udp", "tcp") or not parts.hostname:
            raise ValueError(f"syslog URL must be udp://HOST:PORT or tcp://HOST:PORT: {url!r}")
        self.url = url
        self._tcp = parts.scheme == "tcp"
        self._addr = (parts.hostname, parts.port or (6514 if self._tcp else 514))
        self._timeout = timeout_s
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def send(self, message: bytes) -> None:
        """Raises ``OSError`` when the message could not be handed to the network."""
        with self._lock:
            if not self._tcp:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._sock.sendto(message, self._addr)
                return
            frame = b"%d %s" % (len(message), message)
            for attempt in (0, 1):
                try:
                    if self._sock is None:
                        self._sock = socket.create_connection(self._addr, timeout=self._timeout)
                    self._sock.sendall(frame)
                    return
                except OSError:
                    self._close()
                    if attempt:
                        raise

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def close(self) -> None:
        with self._lock:
            self._close()
