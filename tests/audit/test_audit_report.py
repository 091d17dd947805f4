"""The auditor's report: the figures, and HTML and PDF that render (the PDF turned into an image)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from sqlalchemy import Engine, insert

from audit.chain import ChainKey
from audit.db import make_engine
from audit.models import Base
from audit.read.anchors import AnchorPublisher, DirSink, check_anchors, generate_key, load_private_key, read_anchors
from audit.read.anchors import load_public_key as load_pub
from audit.read.erasure import erase
from audit.read.report import build_report
from audit.read.report_render import render_html, render_pdf
from audit.record import AuditRecord, Verdict
from audit.write.writer import AuditWriter
from tests.audit_db import audit_url, database_url, make_record

__all__ = ["audit_url", "database_url"]

KEY = ChainKey.from_key(b"report-test-key")
SINCE, UNTIL = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)


@pytest.fixture
def engine(audit_url: str) -> Iterator[Engine]:
    eng = make_engine(audit_url)
    yield eng
    eng.dispose()


@pytest.fixture
def filled(engine: Engine, tmp_path: Path) -> list[AuditRecord]:
    records = []
    for i in range(9):
        r = make_record(i)  # verdict flag; step 1 "pii" redacts, check_3 flags
        if i % 3 == 0:
            r.verdict = Verdict.block
            r.steps[1].verdict = Verdict.block
        records.append(r)
    writer = AuditWriter(engine, spool_dir=tmp_path / "spool", key=KEY)
    writer.start()
    for r in records:
        writer.submit(r)
    writer.submit_review(records[0].request_id, "rita", "confirm")
    writer.submit_review(records[1].request_id, "rita", "false_positive")
    writer.submit_review(records[2].request_id, "sam", "escalate")
    assert writer.flush(30)
    writer.close()
    with engine.begin() as conn:
        conn.execute(
            insert(Base.metadata.tables["policy_versions"]).values(
                name="default",
                version_hash="sha256:abc123",
                yaml_text="name: default\n",
                created_at=datetime(2026, 1, 1, 12, tzinfo=UTC),
                created_by="alice",
                note="tighter PII rules",
            )
        )
    erase(engine, actor="dpo", request_id=records[4].request_id, key=KEY)
    return records


def test_the_report_counts_what_happened_and_who_decided(engine: Engine, filled: list[AuditRecord]) -> None:
    rep = build_report(engine, SINCE, UNTIL, key=KEY)
    assert rep.total == 9
    assert rep.by_verdict == {"block": 3, "flag": 6}
    assert sum(d.requests for d in rep.days) == 9 and rep.days[0].blocked == 3
    checks = {c.name: c for c in rep.by_check}
    assert (checks["pii"].redacted, checks["check_1"].blocked, checks["check_3"].flagged) == (9, 3, 9)
    tenants = {t.name: t for t in rep.by_tenant}
    assert tenants["tenant-0"].blocked == 3
    assert rep.rulings == {"confirm": 1, "escalate": 1, "false_positive": 1}
    assert rep.open_items == 7  # 9 acted on, 2 settled; the escalated one stays open
    assert [o.escalated for o in rep.open_sample if o.request_id == filled[2].request_id] == [True]
    (policy,) = rep.policies
    assert (policy.version, policy.requests, policy.saved_by) == ("sha256:abc123", 9, "alice")
    assert [p.saved_by for p in rep.policy_changes] == ["alice"]
    assert rep.integrity is not None and rep.integrity.ok
    assert rep.integrity.verify.erased == 1
    empty = build_report(engine, datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC), key=KEY)
    assert (empty.total, empty.open_items, empty.policies) == (0, 0, [])
    with pytest.raises(ValueError, match="after"):
        build_report(engine, UNTIL, SINCE, key=KEY)


def test_html_and_pdf_render(engine: Engine, filled: list[AuditRecord], tmp_path: Path) -> None:
    key_file = tmp_path / "anchor.pem"
    public = generate_key(key_file)
    AnchorPublisher(engine, load_private_key(key_file), [DirSink(tmp_path / "anchors")]).publish()
    check = check_anchors(engine, read_anchors(str(tmp_path / "anchors"), load_pub(public)), key=KEY)
    rep = build_report(engine, SINCE, UNTIL, key=KEY, anchors=check, anchors_source="anchors/")
    page = render_html(rep)
    headings = (
        'Integrity: <span class="ok">verified', "Volume", "Blocks and redactions by check", "By tenant",
        "Reviewer rulings and open items", "Policy versions in force", "Erasures",
    )  # fmt: skip
    for heading in headings:
        assert heading in page
    assert "<svg" in page and "<script" not in page
    assert "signed chain heads from 1 source checked" in page
    out = tmp_path / "report.pdf"
    render_pdf(rep, out)
    pdf = pdfium.PdfDocument(str(out))
    assert len(pdf) >= 1
    text = "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    for words in ("Warden audit report", "Integrity: verified", "tenant-0", "alice", "Open items: 7"):
        assert words in text
    image = pdf[0].render(scale=1).to_pil().convert("RGB")
    assert image.size[0] > 500
    pixels = list(image.getdata())
    # charts drawn: the block colour (#c0392b) is on the first page, and it is not blank
    assert any(abs(r - 0xC0) < 8 and abs(g - 0x39) < 8 and abs(b - 0x2B) < 8 for r, g, b in pixels)
    assert sum(1 for p in pixels if p != (255, 255, 255)) > 0.02 * len(pixels)


def test_cli_report(engine: Engine, filled: list[AuditRecord], audit_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "WARDEN_DATABASE_URL": audit_url, "WARDEN_AUDIT_KEY": "report-cli-key"}
    env.pop("WARDEN_CONFIG", None)
    base = [sys.executable, "-m", "gateway.cli", "audit", "report", "--since", "2026-01-01", "--until", "2026-01-03"]
    out = tmp_path / "r.pdf"
    done = subprocess.run(
        [*base, "--format", "pdf", "-o", str(out)], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    # the chains were written with another key, so the report says the integrity is not verified
    assert "9 requests, 7 open items, integrity NOT verified" in done.stdout
    assert out.read_bytes().startswith(b"%PDF")
    bad = subprocess.run([*base, "--format", "docx"], capture_output=True, text=True, env=env, check=False)
    assert bad.returncode == 2 and "html or pdf" in bad.stderr
