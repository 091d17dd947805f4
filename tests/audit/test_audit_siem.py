"""OCSF export and RFC 5424 syslog streaming, against real local receivers."""

from __future__ import annotations

import io
import re
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine

from audit.chain import ChainKey
from audit.db import make_engine
from audit.read.siem import SyslogStream, write_ocsf
from audit.record import AuditRecord, Verdict
from audit.settings import SyslogSettings
from audit.syslog import format_message
from audit.write.writer import AuditWriter
from tests.audit_db import audit_url, database_url, make_record

__all__ = ["audit_url", "database_url"]

KEY = ChainKey.from_key(b"siem-test-key")
RFC5424 = re.compile(
    rb"^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (\S+) (\S+) (\d+) (\S+) (-|\[.*?\]) \xef\xbb\xbf(.*)$",
    re.S,
)


@pytest.fixture
def engine(audit_url: str) -> Iterator[Engine]:
    eng = make_engine(audit_url)
    yield eng
    eng.dispose()


def write(engine: Engine, tmp_path: Path, records: list[AuditRecord]) -> None:
    writer = AuditWriter(engine, spool_dir=tmp_path / "spool", key=KEY)
    writer.start()
    for r in records:
        writer.submit(r)
    assert writer.flush(30)
    writer.close()


def test_ocsf_events_carry_the_decision_and_no_text(engine: Engine, tmp_path: Path) -> None:
    blocked = make_record(1)
    blocked.verdict, blocked.http_status = Verdict.block, 400
    write(engine, tmp_path, [make_record(0), blocked])
    out = io.StringIO()
    assert write_ocsf(engine, out) == 2
    events = [orjson.loads(line) for line in out.getvalue().splitlines()]
    for e in events:
        assert (e["class_uid"], e["category_uid"], e["type_uid"]) == (6003, 6, 600301)
        assert e["metadata"]["version"] == "1.3.0"
        assert e["unmapped"]["warden"]["hash"]
        assert "email" not in orjson.dumps(e).decode()  # no prompt text leaves
    by_id = {e["metadata"]["uid"]: e for e in events}
    b = by_id[blocked.request_id]
    assert (b["action"], b["disposition"], b["severity_id"], b["status"]) == ("Denied", "Blocked", 4, "Failure")
    assert "pii" in b["unmapped"]["warden"]["checks_acted"]


def test_rfc5424_framing() -> None:
    msg = format_message(
        "héllo", app_name="warden", msgid="ocsf", facility=16, severity=4, structured={"w@1": {"k": 'a"]b'}}
    )
    m = RFC5424.match(msg)
    assert m is not None
    assert int(m.group(1)) == 16 * 8 + 4
    assert m.group(7) == b'[w@1 k="a\\"\\]b"]'
    assert m.group(8).decode() == "héllo"


class _Tcp(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while True:
            length = b""
            while (c := self.rfile.read(1)) not in (b" ", b""):
                length += c
            if not length:
                return
            self.server.got.append(self.rfile.read(int(length)))  # type: ignore[attr-defined]


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_syslog_stream_sends_each_committed_request_once(engine: Engine, tmp_path: Path, proto: str) -> None:
    got: list[bytes] = []
    if proto == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
    else:
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Tcp)
        server.got = got  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
    write(engine, tmp_path, [make_record(0)])  # before the stream: not sent
    stream = SyslogStream(engine, SyslogSettings(url=f"{proto}://127.0.0.1:{port}"), start=False)
    records = [make_record(i) for i in range(1, 4)]
    write(engine, tmp_path, records)
    assert stream.poll() == 3
    assert stream.poll() == 0
    stream.close()
    if proto == "udp":
        got = [sock.recvfrom(65535)[0] for _ in range(3)]
        sock.close()
    else:
        for _ in range(100):
            if len(got) == 3:
                break
            threading.Event().wait(0.05)
        server.shutdown()
    ids = []
    for raw in got:
        m = RFC5424.match(raw)
        assert m is not None, raw[:80]
        assert m.group(6) == b"ocsf"
        ids.append(orjson.loads(m.group(8))["metadata"]["uid"])
    assert ids == [r.request_id for r in records]
