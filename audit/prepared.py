"""A record as the writer carries it: normalized, JSON-ready, not yet (or already) linked.

``prepare_record(r)`` builds, in one pass, the same object ``canonical.record_obj`` gives
for a stored record, with every value *normalized* so that what comes back from either
database re-hashes to the same bytes: timestamps in UTC, ``-0.0`` and non-finite floats
folded, NUL characters (PostgreSQL refuses them in text) and lone surrogates replaced,
``detail`` serialized once to canonical JSON (kept as an ``orjson.Fragment``), enums to their
strings. The object is what gets
hashed, inserted (``audit.bulk``) and spooled, so no value is converted twice.
Normalizing is idempotent: a stored record prepared again gives the same object.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from audit.canonical import FORMAT_VERSION, canonical, dumps
from audit.models import ChainKind, Ruling
from audit.record import AuditRecord, SpanRecord, Stage, Status, StepRecord, Verdict
from audit.review import ReviewRecord

_INT64 = 2**63


def _dt(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _req_dt(value: datetime) -> datetime:
    out = _dt(value)
    assert out is not None
    return out


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = str(value)
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode()
    return value


def _str(value: str) -> str:
    out = _text(value)
    return "" if out is None else out


def _float(value: float | None) -> float | None:
    if value is None:
        return None
    f = float(value)
    return f + 0.0 if math.isfinite(f) else None


def _int(value: int | None) -> int | None:
    return None if value is None else int(value)


def _enum(cls: Any, value: Any) -> str:
    """The member's string; raises ``ValueError`` for a value that is not a member."""
    member = value if type(value) is cls else cls(value)
    out: str = member._value_
    return out


def _safe_int(token: str) -> int | str:
    n = int(token)
    return n if -_INT64 <= n < 2 * _INT64 else token


_DETAIL_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS
_EMPTY = orjson.Fragment(b"{}")


def detail_json(value: Any) -> bytes:
    """``value`` as canonical JSON (sorted keys): what is stored, and what the hash covers.

    Parsing it back and dumping it sorted gives the same bytes, so verify, which starts from
    the stored JSON, hashes exactly what the writer hashed.
    """
    try:
        return orjson.dumps(value, default=str, option=_DETAIL_OPTS)
    except (TypeError, orjson.JSONEncodeError):
        # Integers beyond 64 bits or lone surrogates: the slow path keeps what it can.
        dumped = json.dumps(value, default=str, ensure_ascii=False, allow_nan=True)
        dumped = dumped.encode("utf-8", "replace").decode()
        native = json.loads(dumped, parse_int=_safe_int, parse_constant=lambda _c: None)
        return orjson.dumps(native, option=_DETAIL_OPTS)


def _span(s: SpanRecord) -> dict[str, Any]:
    return {
        "entity_type": _str(s.entity_type),
        "start": int(s.start),
        "end": int(s.end),
        "score": _float(s.score) or 0.0,
        "fingerprint": _text(s.fingerprint),
    }


def _step(s: StepRecord, details: list[str]) -> dict[str, Any]:
    if s.detail:
        raw = detail_json(s.detail)
        details.append(raw.decode())
        detail: orjson.Fragment = orjson.Fragment(raw)
    else:
        details.append("{}")
        detail = _EMPTY
    return {
        "seq": int(s.seq),
        "stage": _enum(Stage, s.stage),
        "name": _str(s.name),
        "verdict": _enum(Verdict, s.verdict),
        "score": _float(s.score),
        "spans": [_span(x) for x in s.spans] if s.spans else [],
        "latency_ms": _float(s.latency_ms) or 0.0,
        "enforced": bool(s.enforced),
        "detail": detail,
        "text": _text(s.text),
        "at": _dt(s.at),
    }


def prepare_record_obj(r: AuditRecord, details: list[str] | None = None) -> dict[str, Any]:
    """The record's canonical object; each step's detail JSON text is appended to ``details``."""
    details = [] if details is None else details
    return {
        "v": FORMAT_VERSION,
        "request_id": _str(r.request_id),
        "chain_id": None,
        "seq": None,
        "started_at": _req_dt(r.started_at),
        "finished_at": _dt(r.finished_at),
        "tenant": _str(r.tenant),
        "key_id": _str(r.key_id),
        "client_addr": _text(r.client_addr),
        "endpoint": _str(r.endpoint),
        "model_requested": _str(r.model_requested),
        "model_served": _text(r.model_served),
        "stream": bool(r.stream),
        "policy_name": _str(r.policy_name),
        "policy_version": _str(r.policy_version),
        "input_text": _text(r.input_text),
        "output_text": _text(r.output_text),
        "verdict": _enum(Verdict, r.verdict),
        "status": _enum(Status, r.status),
        "http_status": int(r.http_status),
        "finish_reason": _text(r.finish_reason),
        "prompt_tokens": _int(r.prompt_tokens),
        "completion_tokens": _int(r.completion_tokens),
        "latency_ms": _float(r.latency_ms),
        "ttft_ms": _float(r.ttft_ms),
        "trace_id": _text(r.trace_id),
        "error": _text(r.error),
        "steps": [_step(s, details) for s in r.steps],
    }


def prepare_review_obj(r: ReviewRecord) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "review_id": _str(r.review_id),
        "chain_id": None,
        "seq": None,
        "request_id": _str(r.request_id),
        "reviewer": _str(r.reviewer),
        "ruling": _enum(Ruling, r.ruling),
        "note": _str(r.note),
        "at": _req_dt(r.at),
    }


@dataclass(slots=True)
class Prepared:
    """One request record or review decision on its way into the database."""

    kind: ChainKind
    #: the canonical object; ``chain_id`` and ``seq`` are None until linked
    obj: dict[str, Any]
    prev_hash: str | None = None
    hash: str | None = None
    #: each step's detail as stored JSON text, when already serialized (not after a spool)
    details: list[str] | None = None

    @property
    def id(self) -> str:
        key = "request_id" if self.kind is ChainKind.requests else "review_id"
        out: str = self.obj[key]
        return out

    def canonical(self) -> bytes:
        return canonical(self.obj)

    def unlink(self) -> None:
        self.obj["chain_id"] = self.obj["seq"] = self.prev_hash = self.hash = None

    def spool_line(self) -> bytes:
        """One JSON line, always unlinked: a spooled item is linked when it is replayed."""
        obj = {**self.obj, "chain_id": None, "seq": None, "t": self.kind.value}
        return dumps(obj) + b"\n"

    @staticmethod
    def from_line(line: bytes) -> Prepared:
        obj: dict[str, Any] = orjson.loads(line)
        kind = ChainKind(obj.pop("t"))
        if kind is ChainKind.requests:
            obj["started_at"] = _parse(obj["started_at"])
            obj["finished_at"] = _parse(obj["finished_at"])
            for step in obj["steps"]:
                step["at"] = _parse(step["at"])
        else:
            obj["at"] = _parse(obj["at"])
        return Prepared(kind, obj)


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def prepare(item: AuditRecord | ReviewRecord) -> Prepared:
    """Normalize a record for the writer; raises ``ValueError``/``TypeError`` if it is malformed."""
    if isinstance(item, AuditRecord):
        details: list[str] = []
        return Prepared(ChainKind.requests, prepare_record_obj(item, details), details=details)
    if isinstance(item, ReviewRecord):
        return Prepared(ChainKind.reviews, prepare_review_obj(item))
    raise TypeError(f"not an audit record: {type(item).__name__}")
