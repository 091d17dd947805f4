"""A record as the writer carries it: normalized, JSON-ready, not yet (or already) linked.

``prepare_record_obj(r)`` builds, in one pass, the same object ``canonical.record_obj`` gives
for a stored record, with every value *normalized* so that what comes back from either
database re-hashes to the same bytes: timestamps in UTC, ``-0.0`` and non-finite floats
folded, NUL characters (PostgreSQL refuses them in text) and lone surrogates replaced,
``detail`` serialized to canonical JSON (an ``orjson.Fragment``; the fast path below leaves it
to the record's one dump), enums to their strings. The object is what gets hashed, inserted
(``audit.write.bulk``: the steps go in as the slice of the canonical bytes that holds them,
``Prepared.steps_json``) and spooled, so no value is converted twice.
Normalizing is idempotent: a stored record prepared again gives the same object.

``prepare`` is on the writer's hot path, so it first tries ``_fast_record_obj``: the same
object for the common record that needs no normalizing, built inline and checked cheaply
(types, UTC, finite floats; NUL and lone surrogates are found by the one canonical dump it
needs anyway). Anything unusual makes it give up, and the careful normalizer runs instead;
``tests/audit/test_audit_prepared.py`` holds the two to the same bytes.

The canonical bytes of the *unlinked* object (``chain_id`` and ``seq`` null) are made there
too, off the commit path: linking only splices the two values in (``Prepared.canonical``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from audit.canonical import FORMAT_VERSION, canonical
from audit.commitments import Plain, commit_record, plain_steps
from audit.record import AuditRecord, ChainKind, Ruling, SpanRecord, Stage, Status, StepRecord, Verdict
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


#: datetimes in UTC as ``Z``, as in the rest of the record: the fast path dumps a detail as part
#: of the whole record (``_fast_steps``), and the two must give the same bytes
_DETAIL_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z
_EMPTY = orjson.Fragment(b"{}")


def detail_json(value: Any) -> bytes:
    """``value`` as canonical JSON (sorted keys), for the careful path.

    Parsing it back and dumping it sorted gives the same bytes, so a record read back (from
    the spool, or from the database by a reader) dumps to what the writer hashed.
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
        "end": int(s.end),
        "entity_type": _str(s.entity_type),
        "fingerprint": _text(s.fingerprint),
        "score": _float(s.score) or 0.0,
        "start": int(s.start),
    }


def _step(s: StepRecord) -> dict[str, Any]:
    detail = orjson.Fragment(detail_json(s.detail)) if s.detail else _EMPTY
    return {
        "seq": int(s.seq),
        "stage": _enum(Stage, s.stage),
        "name": _str(s.name),
        "verdict": _enum(Verdict, s.verdict),
        "score": _float(s.score),
        "spans": [_span(x) for x in s.spans] if s.spans else (),
        "latency_ms": _float(s.latency_ms) or 0.0,
        "enforced": bool(s.enforced),
        "detail": detail,
        "text": _text(s.text),
        "at": _dt(s.at),
    }


def prepare_record_obj(r: AuditRecord) -> dict[str, Any]:
    """The record's canonical object, normalized."""
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
        "steps": [_step(s) for s in r.steps],
    }


# -- the fast path ---------------------------------------------------------------------------

# Members as keys: a StrEnum member hashes and compares like its string, so plain strings
# are found too, and anything else misses (the careful path then raises the proper error).
_STAGES: Final = {m: m._value_ for m in Stage}
_VERDICTS: Final = {m: m._value_ for m in Verdict}
_STATUSES: Final = {m: m._value_ for m in Status}
_INF: Final = math.inf


class _Unusual(Exception):
    """A value the fast path does not normalize; the careful path takes the record."""


def _s(value: object) -> str:
    if type(value) is not str:
        raise _Unusual
    return value


def _s_opt(value: object) -> str | None:
    if value is not None and type(value) is not str:
        raise _Unusual
    return value


def _utc_opt(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is not UTC:
        raise _Unusual
    return value


def _f_opt(value: float | None) -> float | None:
    if value is None:
        return None
    if type(value) is not float or not -_INF < value < _INF:
        raise _Unusual
    return value + 0.0  # folds -0.0, which SQLite would give back as 0.0


def _fast_steps(
    steps: list[StepRecord], texts: dict[str, str] | None = None, fps: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """With ``texts`` and ``fps``, the step texts and span fingerprints go there by position
    (``audit.commitments``) and the steps hold null, in the same pass."""
    out: list[dict[str, Any]] = []
    append = out.append
    stages, verdicts = _STAGES, _VERDICTS
    for i, s in enumerate(steps):
        score, latency, name, text, at, seq, enforced = (
            s.score, s.latency_ms, s.name, s.text, s.at, s.seq, s.enforced,
        )  # fmt: skip
        # The checks are inlined (no call per field): this loop runs for every step.
        if score is not None:
            if type(score) is not float or not -_INF < score < _INF:
                raise _Unusual
            score += 0.0
        if type(latency) is not float or not -_INF < latency < _INF:
            raise _Unusual
        if type(name) is not str or (text is not None and type(text) is not str) or type(seq) is not int:
            raise _Unusual
        if at is not None and at.tzinfo is not UTC:
            raise _Unusual
        if enforced is not True and enforced is not False:
            raise _Unusual
        detail, spans = s.detail, s.spans
        if type(detail) is not dict:
            raise _Unusual
        if texts is not None and text is not None:
            texts[str(i)] = text
            text = None
        span_objs = [_span(x) for x in spans] if spans else ()
        if fps is not None and spans:
            for j, sp in enumerate(span_objs):
                if sp["fingerprint"] is not None:
                    fps[f"{i}.{j}"], sp["fingerprint"] = sp["fingerprint"], None
        # The detail goes in as it is: the record's one canonical dump sorts its keys, and
        # anything in it that JSON cannot hold as it is (non-string keys, sets, huge integers)
        # makes that dump fail, which sends the record down the careful path.
        append({
            "at": at,
            "detail": detail,
            "enforced": enforced,
            "latency_ms": latency + 0.0,
            "name": name,
            "score": score,
            "seq": seq,
            "spans": span_objs,
            "stage": stages[s.stage],
            "text": text,
            "verdict": verdicts[s.verdict],
        })  # fmt: skip
    return out


def _fast_record_obj(
    r: AuditRecord, texts: dict[str, str] | None = None, fps: dict[str, str] | None = None
) -> dict[str, Any]:
    """``prepare_record_obj(r)`` for a record that needs no normalizing, else ``_Unusual``.

    Strings are only type-checked here: NUL characters and lone surrogates show in the
    canonical dump (``_prepare_request``), which sends such a record down the careful path.
    """
    started_at = r.started_at
    if started_at.tzinfo is not UTC:
        raise _Unusual
    return {
        "chain_id": None,
        "client_addr": _s_opt(r.client_addr),
        "completion_tokens": _int(r.completion_tokens),
        "endpoint": _s(r.endpoint),
        "error": _s_opt(r.error),
        "finish_reason": _s_opt(r.finish_reason),
        "finished_at": _utc_opt(r.finished_at),
        "http_status": int(r.http_status),
        "input_text": _s_opt(r.input_text),
        "key_id": _s(r.key_id),
        "latency_ms": _f_opt(r.latency_ms),
        "model_requested": _s(r.model_requested),
        "model_served": _s_opt(r.model_served),
        "output_text": _s_opt(r.output_text),
        "policy_name": _s(r.policy_name),
        "policy_version": _s(r.policy_version),
        "prompt_tokens": _int(r.prompt_tokens),
        "request_id": _s(r.request_id),
        "seq": None,
        "started_at": started_at,
        "status": _STATUSES[r.status],
        "steps": _fast_steps(r.steps, texts, fps),
        "stream": bool(r.stream),
        "tenant": _s(r.tenant),
        "trace_id": _s_opt(r.trace_id),
        "ttft_ms": _f_opt(r.ttft_ms),
        "v": FORMAT_VERSION,
        "verdict": _VERDICTS[r.verdict],
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


# In canonical JSON every quote inside a string is escaped, so ``,"`` and ``{"`` only ever
# start a key; and the keys that sort before ``chain_id`` and ``seq`` all hold scalars. The
# first match of each is therefore the top-level field.
_CHAIN_NULL: Final = b'"chain_id":null,'
_SEQ_NULL: Final = b',"seq":null,'
_STEPS_AT: Final = b',"steps":['
_STREAM_AT: Final = b'],"stream":'


@dataclass(slots=True)
class Prepared:
    """One request record or review decision on its way into the database."""

    kind: ChainKind
    #: the canonical object; ``chain_id`` and ``seq`` are None until linked
    obj: dict[str, Any]
    prev_hash: str | None = None
    hash: str | None = None
    #: canonical bytes of ``obj`` with ``chain_id`` and ``seq`` null (made on first use)
    body: bytes | None = None
    #: rows in the form the database's bulk insert wants, made ahead by ``audit.write.bulk``
    rows: Any = None
    #: a request record's texts and salt, which its hash covers only by commitment
    plain: Plain | None = None

    @property
    def id(self) -> str:
        key = "request_id" if self.kind is ChainKind.requests else "review_id"
        out: str = self.obj[key]
        return out

    def unlinked(self) -> bytes:
        body = self.body
        if body is None:
            body = self.body = canonical({**self.obj, "chain_id": None, "seq": None})
        return body

    def canonical(self) -> bytes:
        """``canonical(self.obj)``, made by splicing ``chain_id`` and ``seq`` into ``unlinked()``."""
        body = self.unlinked()
        chain_id, seq = self.obj["chain_id"], self.obj["seq"]
        if chain_id is None and seq is None:
            return body
        c = body.index(_CHAIN_NULL) + 11  # at "null" after "chain_id":
        s = body.index(_SEQ_NULL, c) + 7  # at "null" after ,"seq":
        return b"".join((body[:c], orjson.dumps(chain_id), body[c + 4 : s], orjson.dumps(seq), body[s + 4 :]))

    def unlink(self) -> None:
        self.obj["chain_id"] = self.obj["seq"] = self.prev_hash = self.hash = None

    def compact(self) -> None:
        """Let go of the step objects once ``body`` and ``rows`` hold what they held.

        A prepared batch waits between the writer's threads; without its ~20 dicts per
        record it takes less than half the memory, which measurably speeds up preparing.
        ``steps()`` parses them back if they are wanted again.
        """
        self.unlinked()
        self.obj["steps"] = None

    def steps_json(self) -> bytes:
        """The steps array of ``unlinked()``, as it stands there: the stored steps document.

        The top-level keys sort ``... "status", "steps", "stream", "tenant", ...``; everything
        before ``steps`` is a scalar and everything after it too, and quotes inside strings
        are escaped, so the first ``,"steps":[`` and the last ``],"stream":`` bound it.
        """
        body = self.unlinked()
        return body[body.index(_STEPS_AT) + len(_STEPS_AT) - 1 : body.rindex(_STREAM_AT) + 1]

    def steps(self) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] | None = self.obj["steps"]
        if steps is None:
            steps = _objects(self.kind, orjson.loads(self.unlinked()))["steps"]
        return steps

    def resalted(self, salt: str) -> Prepared:
        """The same request record committed under ``salt`` (hex): to tell a record sent again
        (which got a fresh salt) from a different one stored under its id."""
        assert self.plain is not None
        plain = self.plain
        obj = {
            **self.obj,
            "v": FORMAT_VERSION,
            "input_text": plain.input_text,
            "output_text": plain.output_text,
            "steps": plain_steps(self.steps(), plain.texts),
        }
        committed, new_plain = commit_record(obj, bytes.fromhex(salt))
        return Prepared(self.kind, committed, plain=new_plain)

    def spool_line(self) -> bytes:
        """One JSON line, always unlinked: a spooled item is linked when it is replayed."""
        extra = b""
        if self.plain is not None:
            extra = b',"x":' + orjson.dumps(self.plain.to_json())
        return b'%s,"t":"%s"%s}\n' % (self.unlinked()[:-1], self.kind.value.encode(), extra)

    @staticmethod
    def from_line(line: bytes) -> Prepared:
        obj: dict[str, Any] = orjson.loads(line)
        kind = ChainKind(obj.pop("t"))
        x = obj.pop("x", None)
        obj = _objects(kind, obj)
        if kind is ChainKind.requests and x is None:
            # spooled before texts were committed (format 1): commit them now
            committed, plain = commit_record(obj)
            return Prepared(kind, committed, plain=plain)
        return Prepared(kind, obj, plain=None if x is None else Plain.from_json(x))


def _objects(kind: ChainKind, obj: dict[str, Any]) -> dict[str, Any]:
    """Parsed JSON back to the prepared object (datetimes from their ISO strings)."""
    if kind is ChainKind.requests:
        obj["started_at"] = _parse(obj["started_at"])
        obj["finished_at"] = _parse(obj["finished_at"])
        for step in obj["steps"]:
            step["at"] = _parse(step["at"])
    else:
        obj["at"] = _parse(obj["at"])
    return obj


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


_NUL_ESCAPE: Final = b"\\u0000"


def _prepare_request(r: AuditRecord) -> Prepared:
    try:
        # commit_record raises ValueError for texts with NUL or lone surrogates
        texts: dict[str, str] = {}
        fps: dict[str, str] = {}
        obj, plain = commit_record(_fast_record_obj(r, texts, fps), texts=texts, fps=fps)
        body = canonical(obj)
    except (_Unusual, KeyError, TypeError, ValueError, AttributeError):  # orjson's errors are TypeErrors
        pass
    else:
        # A false alarm (a detail holding an escaped NUL, or a literal backslash before
        # "u0000") only costs the careful path.
        if _NUL_ESCAPE not in body:
            return Prepared(ChainKind.requests, obj, body=body, plain=plain)
    obj, plain = commit_record(prepare_record_obj(r))
    return Prepared(ChainKind.requests, obj, body=canonical(obj), plain=plain)


def prepare(item: AuditRecord | ReviewRecord) -> Prepared:
    """Normalize a record for the writer; raises ``ValueError``/``TypeError`` if it is malformed."""
    if isinstance(item, AuditRecord):
        return _prepare_request(item)
    if isinstance(item, ReviewRecord):
        return Prepared(ChainKind.reviews, prepare_review_obj(item))
    raise TypeError(f"not an audit record: {type(item).__name__}")
