"""Records out, in the compliance shape: one by id, streamed with filters, JSONL and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine

from audit.chain import ChainKey
from audit.db import make_engine
from audit.read.export import (
    count_records,
    get_record,
    get_request,
    iter_records,
    to_compliance,
    write_csv,
    write_jsonl,
)
from audit.read.record_filter import RecordFilter
from audit.record import AuditRecord, Verdict
from audit.write.writer import AuditWriter
from tests.audit_db import audit_url, database_url, make_record

__all__ = ["audit_url", "database_url"]

KEY = ChainKey.from_key(b"export-test-key")


@pytest.fixture
def stored(audit_url: str, tmp_path: Path) -> Iterator[tuple[Engine, list[AuditRecord]]]:
    engine = make_engine(audit_url)
    records = [make_record(i) for i in range(12)]
    records[4].verdict = Verdict.block
    records[4].steps[1].name = "secrets"
    records[4].steps[1].verdict = Verdict.block
    records[7].input_text = "=HYPERLINK('http://evil')"
    writer = AuditWriter(engine, spool_dir=tmp_path, key=KEY)
    writer.start()
    for r in records:
        writer.submit(r)
    assert writer.flush(30)
    writer.close()
    yield engine, records
    engine.dispose()


def test_the_compliance_shape() -> None:
    doc = to_compliance(make_record(3))
    assert list(doc)[:4] == ["request_id", "input_text", "inference_steps", "output_decision"]
    assert doc["output_decision"] == "flagged"
    first = doc["inference_steps"][0]
    assert (first["step"], first["action"], first["result"]) == (1, "input:pii", "redact")
    assert first["spans"] == [
        {"entity_type": "EMAIL_ADDRESS", "start": 6, "end": 23, "score": 0.95, "fingerprint": "f" * 32}
    ]
    reasoning = doc["inference_steps"][5]
    assert reasoning["action"] == "reasoning:step_5" and reasoning["text"].startswith("Step 5")
    assert doc["policy_version"] == "sha256:abc123" and doc["tenant"] == "tenant-0"
    orjson.dumps(doc)  # JSON-ready as it is


def test_get_request_returns_the_stored_record(stored: tuple[Engine, list[AuditRecord]]) -> None:
    engine, records = stored
    doc = get_request(engine, records[4].request_id)
    assert doc is not None
    assert doc["output_decision"] == "blocked"
    assert len(doc["inference_steps"]) == 20
    assert doc["chain_id"] and doc["seq"] == 5 and len(doc["hash"]) == 64
    assert get_request(engine, "no-such-request") is None


@pytest.mark.parametrize(
    ("flt", "limit", "expected"),
    [
        (RecordFilter(), None, list(range(12))),
        (RecordFilter(tenants=("tenant-1",)), None, [1, 4, 7, 10]),
        (RecordFilter(verdicts=(Verdict.block.value,)), None, [4]),
        (RecordFilter(checks=("secrets",)), None, [4]),
        (RecordFilter(checks=("check_1",)), None, []),
        (RecordFilter(text="HYPERLINK"), None, [7]),
        (RecordFilter(text="hyperlink('HTTP"), None, [7]),  # ignoring case
        (RecordFilter(text="hyper_ink"), None, []),  # _ and % are literal
        (RecordFilter(models=("gpt-4o-mini",), policy_versions=("sha256:abc123",)), 3, [0, 1, 2]),
        (RecordFilter(models=("other",)), None, []),
    ],
)
def test_filters(
    stored: tuple[Engine, list[AuditRecord]], flt: RecordFilter, limit: int | None, expected: list[int]
) -> None:
    engine, records = stored
    got = [d["request_id"] for d in iter_records(engine, flt, page_size=5, limit=limit)]
    assert got == [records[i].request_id for i in expected]
    assert count_records(engine, flt, limit=limit) == len(expected)


def test_time_window(stored: tuple[Engine, list[AuditRecord]]) -> None:
    engine, records = stored
    since = records[3].started_at
    flt = RecordFilter(start=since, end=since + timedelta(seconds=3))
    assert [d["request_id"] for d in iter_records(engine, flt)] == [r.request_id for r in records[3:6]]


def test_jsonl_export_streams_every_record(stored: tuple[Engine, list[AuditRecord]]) -> None:
    engine, records = stored
    out = io.StringIO()
    seen: list[int] = []
    assert write_jsonl(engine, out, progress=seen.append) == 12
    docs = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [d["request_id"] for d in docs] == [r.request_id for r in records]
    assert docs[0] == to_compliance(_stored(engine, records[0]))
    assert seen == list(range(1, 13))


def _stored(engine: Engine, record: AuditRecord) -> AuditRecord:
    found = get_record(engine, record.request_id)
    assert found is not None
    return found


def test_csv_export_neutralizes_formulas(stored: tuple[Engine, list[AuditRecord]]) -> None:
    engine, records = stored
    out = io.StringIO()
    assert write_csv(engine, out, RecordFilter(tenants=("tenant-1",))) == 4
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["request_id"] for r in rows] == [records[i].request_id for i in (1, 4, 7, 10)]
    assert rows[2]["input_text"] == "'=HYPERLINK('http://evil')"
    steps = orjson.loads(rows[1]["inference_steps"])
    assert steps[1]["action"] == "input:secrets" and steps[1]["result"] == "block"
