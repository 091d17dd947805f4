"""Anchored chain heads: the tampering a chain inside its own database cannot show.

Someone with write access deletes the newest request record (and its index rows) and moves
``audit_chains.last_seq`` / ``head_hash`` back to the record before: plain verify says ok;
verify against the published, signed heads names the chain and the missing range. The same
for a rewritten (re-hashed) tail, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, text

from audit.chain import ChainKey, link_hash
from audit.db import make_engine
from audit.read.anchors import (
    AnchorPublisher,
    DirSink,
    check_anchors,
    generate_key,
    load_private_key,
    load_public_key,
    read_anchors,
)
from audit.read.verify import ProblemKind, verify
from audit.record import AuditRecord
from audit.rows import REQUESTS, stored_canonical
from audit.write.writer import AuditWriter
from tests.audit_db import audit_url, database_url, make_record

__all__ = ["audit_url", "database_url"]

#: the tampering needs no key when the chain has none; with WARDEN_AUDIT_KEY the rewrite is
#: caught by plain verify already, so these tests use an unkeyed chain (the harder case)
NO_KEY = ChainKey(None, None)


@pytest.fixture
def engine(audit_url: str) -> Iterator[Engine]:
    eng = make_engine(audit_url)
    yield eng
    eng.dispose()


@pytest.fixture
def signing(tmp_path: Path) -> tuple[Path, str]:
    key_file = tmp_path / "keys" / "anchor.pem"
    return key_file, generate_key(key_file)


class Setup:
    def __init__(self, engine: Engine, tmp_path: Path, key_file: Path, public: str) -> None:
        self.engine = engine
        self.dir = tmp_path / "anchors"
        self.public = public
        self.publisher = AnchorPublisher(engine, load_private_key(key_file), [DirSink(self.dir)])
        self.writer = AuditWriter(engine, spool_dir=tmp_path / "spool", key=NO_KEY)
        self.writer.start()
        self.records: list[AuditRecord] = []

    def write(self, n: int) -> None:
        for _ in range(n):
            r = make_record(len(self.records))
            self.records.append(r)
            self.writer.submit(r)
        assert self.writer.flush(30)

    @property
    def chain_id(self) -> str:
        return self.writer.requests_chain.chain_id

    def check(self) -> object:
        return check_anchors(self.engine, read_anchors(str(self.dir), load_public_key(self.public)), key=NO_KEY)


@pytest.fixture
def setup(engine: Engine, tmp_path: Path, signing: tuple[Path, str]) -> Iterator[Setup]:
    s = Setup(engine, tmp_path, *signing)
    yield s
    s.writer.close()


def sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def cut_newest(engine: Engine, chain_id: str) -> None:
    """The issue's tampering: the newest record and its index rows go, the head moves back."""
    with engine.begin() as conn:
        last = conn.execute(
            text("SELECT request_id, seq FROM audit_requests WHERE chain_id = :c ORDER BY seq DESC LIMIT 1"),
            {"c": chain_id},
        ).one()
        prev_hash = conn.execute(
            text("SELECT hash FROM audit_requests WHERE chain_id = :c AND seq = :s"), {"c": chain_id, "s": last.seq - 1}
        ).scalar_one()
        for table in ("audit_spans", "audit_acted_steps", "audit_requests"):
            conn.execute(text(f"DELETE FROM {table} WHERE request_id = :r"), {"r": last.request_id})  # noqa: S608
        conn.execute(
            text("UPDATE audit_chains SET last_seq = :s, head_hash = :h WHERE chain_id = :c"),
            {"s": last.seq - 1, "h": prev_hash, "c": chain_id},
        )


def test_a_cut_tail_passes_plain_verify_but_not_the_anchors(setup: Setup) -> None:
    setup.write(5)
    assert setup.publisher.publish() == 1
    cut_newest(setup.engine, setup.chain_id)
    assert verify(setup.engine, key=NO_KEY).ok  # the weakness the anchors close
    check = setup.check()
    assert not check.ok  # type: ignore[attr-defined]
    (problem,) = check.problems  # type: ignore[attr-defined]
    assert problem.kind is ProblemKind.anchor_missing
    assert problem.chain_id == setup.chain_id
    assert f"chain {setup.chain_id}: records seq 5..5 are missing" in problem.message
    assert "its head in the database says seq 4" in problem.message


def test_a_rewound_and_rewritten_tail_is_named_with_its_range(setup: Setup) -> None:
    setup.write(2)
    setup.publisher.publish()
    setup.write(3)
    setup.publisher.publish()
    # Rewrite seq 3 and re-hash it and everything after it, head included: without a chain
    # key that is all an attacker needs to do to fool plain verify.
    with setup.engine.begin() as conn:
        conn.execute(text("UPDATE audit_requests SET output_text = 'nothing to see' WHERE seq = 3"))
        prev = conn.execute(text("SELECT hash FROM audit_requests WHERE seq = 2")).scalar_one()
        for seq in (3, 4, 5):
            row = conn.execute(REQUESTS.select().where(REQUESTS.c.seq == seq)).mappings().one()
            new = link_hash(NO_KEY, prev, stored_canonical(row))
            conn.execute(
                text("UPDATE audit_requests SET prev_hash = :p, hash = :h WHERE seq = :s"),
                {"p": prev, "h": new, "s": seq},
            )
            prev = new
        conn.execute(text("UPDATE audit_chains SET head_hash = :h"), {"h": prev})
    assert verify(setup.engine, key=NO_KEY).ok
    check = setup.check()
    (problem,) = check.problems  # type: ignore[attr-defined]
    assert problem.kind is ProblemKind.anchor_mismatch
    assert f"chain {setup.chain_id}: records seq 3..5 were rewritten" in problem.message


def test_rewinding_and_appending_new_records_is_caught(setup: Setup) -> None:
    setup.write(4)
    setup.publisher.publish()
    cut_newest(setup.engine, setup.chain_id)
    cut_newest(setup.engine, setup.chain_id)
    # a fresh writer continuing the same chain id writes different records at seq 3 and 4
    writer = AuditWriter(setup.engine, spool_dir=setup.dir.parent / "spool2", key=NO_KEY, chain_id=setup.chain_id)
    writer.start()
    for i in range(2):
        writer.submit(make_record(100 + i))
    assert writer.flush(30)
    writer.close()
    assert verify(setup.engine, key=NO_KEY).ok
    (problem,) = setup.check().problems  # type: ignore[attr-defined]
    assert problem.kind is ProblemKind.anchor_mismatch
    assert "records seq 1..4 were rewritten" in problem.message


def test_an_intact_chain_passes_and_what_is_not_yet_anchored_is_noted(setup: Setup) -> None:
    setup.write(3)
    setup.publisher.publish()
    assert setup.publisher.publish() == 0  # nothing moved: nothing new to sign
    setup.write(2)
    check = setup.check()
    assert check.ok, check.problems  # type: ignore[attr-defined]
    assert any("seq 4..5 written after its newest anchor" in n for n in check.notes)  # type: ignore[attr-defined]


def test_anchors_signed_by_another_key_or_edited_do_not_count(setup: Setup, tmp_path: Path) -> None:
    setup.write(2)
    setup.publisher.publish()
    (file,) = setup.dir.glob("*.jsonl")
    line = orjson.loads(file.read_bytes().splitlines()[0])
    line["seq"] = 1  # an edited anchor
    other = AnchorPublisher(setup.engine, load_private_key(_other_key(tmp_path)), [DirSink(setup.dir)])
    other.publish()  # a well-formed anchor under a key the config does not name
    with file.open("ab") as f:
        f.write(orjson.dumps(line) + b"\nnot json\n")
    check = setup.check()
    kinds = [p.kind for p in check.problems]  # type: ignore[attr-defined]
    assert kinds == [ProblemKind.anchor_invalid] * 3
    text_ = " ".join(p.message for p in check.problems)  # type: ignore[attr-defined]
    assert "signature does not verify" in text_
    assert "not JSON" in text_


def _other_key(tmp_path: Path) -> Path:
    path = tmp_path / "other.pem"
    generate_key(path)
    return path


def test_anchors_are_read_from_a_url(setup: Setup) -> None:
    setup.write(3)
    setup.publisher.publish()
    cut_newest(setup.engine, setup.chain_id)
    handler = partial(SimpleHTTPRequestHandler, directory=str(setup.dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (file,) = setup.dir.glob("*.jsonl")
        url = f"http://127.0.0.1:{server.server_port}/{file.name}"
        found = read_anchors(url, load_public_key(setup.public))
    finally:
        server.shutdown()
    check = check_anchors(setup.engine, found, key=NO_KEY)
    assert [p.kind for p in check.problems] == [ProblemKind.anchor_missing]


def test_the_publisher_publishes_the_final_heads_when_it_closes(setup: Setup) -> None:
    setup.publisher.start()
    setup.write(3)
    setup.publisher.close()
    found = read_anchors(str(setup.dir), load_public_key(setup.public))
    assert [(a.chain_id, a.seq) for a in found.anchors] == [(setup.chain_id, 3)]


def _cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WARDEN_DATABASE_URL": url}
    env.pop("WARDEN_CONFIG", None)
    env.pop("WARDEN_AUDIT_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, env=env, check=False
    )


def test_cli_verify_with_and_without_anchors(setup: Setup, audit_url: str) -> None:
    setup.write(4)
    setup.publisher.publish()
    cut_newest(setup.engine, setup.chain_id)
    plain = _cli("audit", "verify", url=audit_url)
    assert plain.returncode == 0, plain.stderr
    assert "truncation of a chain's newest records cannot be detected" in plain.stderr
    anchored = _cli("audit", "verify", "--anchors", str(setup.dir), "--public-key", setup.public, url=audit_url)
    assert anchored.returncode == 1
    assert f"anchor_missing: chain {setup.chain_id}: records seq 4..4 are missing" in anchored.stderr
    assert "FAILED" in anchored.stdout + anchored.stderr


def test_cli_anchor_key_writes_a_private_key_once(tmp_path: Path) -> None:
    out = tmp_path / "anchor.pem"
    made = _cli("audit", "anchor-key", "--out", str(out), url="sqlite://")
    assert made.returncode == 0, made.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    public = (tmp_path / "anchor.pem.pub").read_text().strip()
    assert f"public_key: {public}" in made.stdout
    load_public_key(public)
    again = _cli("audit", "anchor-key", "--out", str(out), url="sqlite://")
    assert again.returncode == 2
    assert "never overwritten" in again.stderr


def test_anchors_go_to_a_webhook_and_syslog_and_read_back(
    engine: Engine, tmp_path: Path, signing: tuple[Path, str]
) -> None:
    import socket
    from http.server import BaseHTTPRequestHandler

    from audit.read.anchors import SyslogSink, WebhookSink

    posted: list[bytes] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posted.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(204)
            self.end_headers()

        def do_GET(self) -> None:  # serves what was posted, as an anchor service would
            self.send_response(200)
            self.end_headers()
            self.wfile.write(posted[-1])

        def log_message(self, *args: object) -> None: ...

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    url = f"http://127.0.0.1:{server.server_port}/anchors"
    key_file, public = signing
    sinks = [WebhookSink(url), SyslogSink(f"udp://127.0.0.1:{udp.getsockname()[1]}")]
    writer = AuditWriter(engine, spool_dir=tmp_path / "spool", key=NO_KEY)
    writer.start()
    writer.submit(make_record(0))
    assert writer.flush(30)
    writer.close()
    assert AnchorPublisher(engine, load_private_key(key_file), sinks).publish() == 1
    message = udp.recvfrom(65535)[0]
    udp.close()
    assert message.startswith(b"<133>1 ") and b" anchor " in message  # local0.notice, msgid anchor
    assert b'"chain_id":"' + writer.requests_chain.chain_id.encode() in message
    found = read_anchors(url, load_public_key(public))
    server.shutdown()
    assert [(a.chain_id, a.seq) for a in found.anchors] == [(writer.requests_chain.chain_id, 1)]
    assert check_anchors(engine, found, key=NO_KEY).ok


def test_bad_anchor_settings_are_clear_errors(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from audit.settings import AnchorSettings

    with pytest.raises(ValidationError, match="somewhere to go"):
        AnchorSettings(key_file="k.pem", dir=None)
    with pytest.raises(ValidationError, match="udp://HOST:PORT"):
        AnchorSettings(key_file="k.pem", syslog="syslog.example:514")
    with pytest.raises(ValidationError, match="extra"):
        AnchorSettings.model_validate({"key_file": "k.pem", "intervals": 5})
    with pytest.raises(ValueError, match="not an Ed25519 public key"):
        load_public_key("bm90IGEga2V5")
    other = tmp_path / "a.pem"
    generate_key(other)
    settings = AnchorSettings(key_file=str(other), public_key=load_public_key_text(tmp_path))
    with pytest.raises(ValueError, match="does not belong"):
        AnchorPublisher.from_settings(None, settings, Path)  # type: ignore[arg-type]


def load_public_key_text(tmp_path: Path) -> str:
    return generate_key(tmp_path / "b.pem")
