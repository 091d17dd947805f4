"""The explorer's exports: the filtered records as CSV (one row per request) or JSONL (full records).

Both stream from ``data.iter_records`` in pages, up to a cap, so an export never loads the
whole table. JSONL lines are ``audit.read.export.to_compliance`` objects, the shape the audit API
and ``warden audit export`` write.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

import orjson

from audit.read.export import to_compliance
from audit.record import AuditRecord
from dashboard.record_view import acted

CSV_FIELDS = (
    "request_id",
    "started_at",
    "finished_at",
    "tenant",
    "key_id",
    "endpoint",
    "model_requested",
    "model_served",
    "stream",
    "policy_name",
    "policy_version",
    "verdict",
    "status",
    "http_status",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "ttft_ms",
    "trace_id",
    "checks_acted",
    "input_text",
    "output_text",
)


def _csv_value(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return "" if value is None else value


def _guard_formula(value: Any) -> Any:
    """Cells that a spreadsheet would run as a formula get a leading quote (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(records: Iterable[AuditRecord]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for r in records:
        row = {name: _guard_formula(_csv_value(getattr(r, name, None))) for name in CSV_FIELDS}
        row["checks_acted"] = ";".join(dict.fromkeys(s.name for s in acted(r.steps)))
        writer.writerow(row)
    return out.getvalue().encode("utf-8")


def to_jsonl(records: Iterable[AuditRecord]) -> bytes:
    return b"".join(orjson.dumps(to_compliance(r)) + b"\n" for r in records)
