"""One filter for every reader: ``warden audit export`` and the dashboard's request list return
the same records for the same filter, on SQLite and PostgreSQL (``audit.read.record_filter``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from audit.db import make_engine
from audit.read.record_filter import RecordFilter
from audit.record import AuditRecord, Stage, Verdict
from audit.write.writer import AuditWriter
from dashboard import data
from gateway.cli import app
from tests.audit_db import audit_url, database_url, make_record
from tests.gateway_harness import write_config

__all__ = ["audit_url", "database_url"]

TEXTS = {
    2: "Please send the MERGER memo",
    5: "the merger is off",
    7: "100% off, use code_1",
    8: "100 percent off, use codex1",
}


@pytest.fixture
def stored(audit_url: str, tmp_path: Path) -> Iterator[tuple[Engine, Path, list[AuditRecord]]]:
    records = [make_record(i) for i in range(12)]
    for i, text in TEXTS.items():
        records[i].input_text = text
    records[4].verdict = Verdict.block
    records[4].steps[1].name = "secrets"
    records[4].steps[1].verdict = Verdict.block
    records[9].model_requested = "other-model"
    records[10].policy_version = "sha256:def456"
    records[11].output_text = "The answer mentions a Merger."
    assert records[0].steps[3].stage is Stage.upstream and records[0].steps[3].verdict is Verdict.flag
    engine = make_engine(audit_url)
    writer = AuditWriter(engine, spool_dir=tmp_path / "spool")
    writer.start()
    for r in records:
        writer.submit(r)
    assert writer.flush(30)
    writer.close()
    config = write_config(tmp_path, "http://127.0.0.1:9/v1", database_url=audit_url)
    yield engine, config, records
    engine.dispose()


def _at(n: int) -> datetime:
    """The n-th record's second, naive (the CLI takes naive times as UTC)."""
    return make_record(n).started_at.replace(tzinfo=None, microsecond=0)


# (CLI options, the same filter as the dashboard builds it, the records expected)
CASES = {
    "everything": ([], RecordFilter(), list(range(12))),
    "tenant": (["--tenant", "tenant-1"], RecordFilter(tenants=("tenant-1",)), [1, 4, 7, 10]),
    "verdict": (["--verdict", "block"], RecordFilter(verdicts=("block",)), [4]),
    "check": (["--check", "secrets"], RecordFilter(checks=("secrets",)), [4]),
    # a flagged upstream step is not a check's: no check of that name ever acted
    "not a check": (["--check", "check_3"], RecordFilter(checks=("check_3",)), []),
    "model": (["--model", "other-model"], RecordFilter(models=("other-model",)), [9]),
    "policy version": (["--policy-version", "sha256:def456"], RecordFilter(policy_versions=("sha256:def456",)), [10]),
    # text: input or output, ignoring case
    "text": (["--text", "merger"], RecordFilter(text="merger"), [2, 5, 11]),
    # text: % and _ are the characters themselves, not wildcards
    "literal text": (["--text", "100%_off"], RecordFilter(text="100%_off"), []),
    "literal underscore": (["--text", "code_1"], RecordFilter(text="code_1"), [7]),
    "time": (
        ["--since", _at(3).isoformat(), "--until", _at(6).isoformat()],
        RecordFilter(start=_at(3), end=_at(6)),
        [3, 4, 5],
    ),
    "combined": (
        ["--tenant", "tenant-2", "--text", "MERGER", "--since", _at(1).isoformat()],
        RecordFilter(tenants=("tenant-2",), text="MERGER", start=_at(1)),
        [2, 5, 11],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_export_and_dashboard_list_agree(stored: tuple[Engine, Path, list[AuditRecord]], case: str) -> None:
    engine, config, records = stored
    options, flt, expected = CASES[case]
    want = {records[i].request_id for i in expected}
    result = CliRunner().invoke(app, ["audit", "export", "--config", str(config), "--format", "jsonl", *options])
    assert result.exit_code == 0, result.output
    exported = [orjson.loads(line)["request_id"] for line in result.stdout.splitlines()]
    listed = [r.request_id for r in data.request_page(engine, flt, limit=100)]
    assert set(exported) == want
    assert set(listed) == want
    assert len(exported) == len(listed) == data.count_requests(engine, flt)
    # the export is oldest first, the list newest first
    assert exported == listed[::-1]


def test_a_wrong_verdict_is_refused(stored: tuple[Engine, Path, list[AuditRecord]]) -> None:
    _, config, _ = stored
    result = CliRunner().invoke(app, ["audit", "export", "--config", str(config), "--verdict", "blocked"])
    assert result.exit_code == 2
    assert "--verdict must be one of" in result.output
