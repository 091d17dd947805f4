"""Salted commitments: the chain covers a commitment of each stored text, not the text.

A request record in format 2 is hashed with each text field (``input_text``,
``output_text``, each step's ``text``, each span's ``fingerprint``) replaced by
``SHA-256(salt || path || 0x00 || UTF-8 text)``, hex, where ``salt`` is 16 random bytes
per record and ``path`` names the field (``input_text``, ``s3.text``, ``s3.0.fp``: step and
span by position). Null stays null. What is stored beside the chain:

* ``audit_requests.steps``: the steps document *as hashed*, commitments in place of texts
  (so it is still byte for byte what the hash covers);
* ``texts``: the step texts and span fingerprints, ``{"t": {"3": text}, "f": {"3.0": fp}}``
  as canonical JSON (null when there are none); ``input_text`` / ``output_text`` columns;
* ``salt`` (hex).

Erasing a record (``audit.erasure``) deletes the texts, the fingerprints and the salt and
keeps the two top-level commitments (``erased_commits``), so the record still hashes to what
its chain says while the text is gone; without the salt a commitment cannot be tested against
guesses, however short the text was. Records written before format 2 (``salt`` null, never
erased) are hashed over their texts as before and stay verifiable, but cannot be erased
without breaking their chain: ``erase`` leaves them and says so.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Final

import orjson

FORMAT: Final = 2
SALT_BYTES: Final = 16
_CANON: Final = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z
INPUT, OUTPUT = "input_text", "output_text"


def commit(salt: bytes, path: str, value: str) -> str:
    """Raises ``ValueError`` for text the database cannot hold as is (NUL, lone surrogates):
    the writer's fast path then takes the careful one, which normalizes it first."""
    if "\x00" in value:
        raise ValueError("NUL in text")
    return hashlib.sha256(b"%s%s\x00%s" % (salt, path.encode(), value.encode())).hexdigest()


def _commit_opt(salt: bytes, path: str, value: str | None) -> str | None:
    return None if value is None else commit(salt, path, value)


@dataclass(slots=True)
class Plain:
    """What a record's commitments stand for: stored beside the chain, erasable."""

    salt: str
    input_text: str | None
    output_text: str | None
    #: canonical JSON of the step texts and span fingerprints, or None when there are none
    texts: bytes | None
    #: the span fingerprints by "step.span" position, as made (not stored: ``texts`` has them)
    fps: dict[str, str] | None = None

    def fingerprints(self) -> dict[str, str]:
        return self.fps if self.fps is not None else parse_texts(self.texts)[1]

    def to_json(self) -> dict[str, Any]:
        texts = None if self.texts is None else orjson.Fragment(self.texts)
        return {"salt": self.salt, INPUT: self.input_text, OUTPUT: self.output_text, "texts": texts}

    @staticmethod
    def from_json(obj: dict[str, Any]) -> Plain:
        texts = obj.get("texts")
        return Plain(obj["salt"], obj.get(INPUT), obj.get(OUTPUT), None if texts is None else dumps(texts))


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=_CANON)


def commit_record(obj: dict[str, Any], salt: bytes | None = None) -> tuple[dict[str, Any], Plain]:
    """The record object as hashed (format 2), and what it stands for."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    steps: list[dict[str, Any]] = obj["steps"]
    texts: dict[str, str] = {}
    fps: dict[str, str] = {}
    out_steps: list[dict[str, Any]] | None = None
    for i, s in enumerate(steps):
        text, spans = s["text"], s["spans"]
        if text is None and not spans:
            continue
        if out_steps is None:
            out_steps = list(steps)
        step = dict(s)
        if text is not None:
            texts[str(i)] = text
            step["text"] = commit(salt, f"s{i}.text", text)
        if spans:
            new_spans = []
            for j, sp in enumerate(spans):
                fp = sp["fingerprint"]
                if fp is not None:
                    fps[f"{i}.{j}"] = fp
                    sp = {**sp, "fingerprint": commit(salt, f"s{i}.{j}.fp", fp)}
                new_spans.append(sp)
            step["spans"] = new_spans
        out_steps[i] = step
    committed = {
        **obj,
        "v": FORMAT,
        INPUT: _commit_opt(salt, INPUT, obj[INPUT]),
        OUTPUT: _commit_opt(salt, OUTPUT, obj[OUTPUT]),
        "steps": steps if out_steps is None else out_steps,
    }
    doc = None
    if texts or fps:
        doc = dumps({"f": fps, "t": texts})
    return committed, Plain(salt.hex(), obj[INPUT], obj[OUTPUT], doc, fps)


def parse_texts(texts: str | bytes | None) -> tuple[dict[str, str], dict[str, str]]:
    """(step texts by position, span fingerprints by "step.span") from a ``texts`` document."""
    if not texts:
        return {}, {}
    doc = orjson.loads(texts)
    return doc.get("t") or {}, doc.get("f") or {}


def plain_steps(steps: list[dict[str, Any]], texts: str | bytes | None) -> list[dict[str, Any]]:
    """A format-2 steps document with its texts and fingerprints put back (null where erased)."""
    t, f = parse_texts(texts)
    out = []
    for i, s in enumerate(steps):
        if s.get("text") is None and not s.get("spans"):
            out.append(s)
            continue
        step = dict(s)
        if step.get("text") is not None:
            step["text"] = t.get(str(i))
        if step.get("spans"):
            step["spans"] = [
                {**sp, "fingerprint": f.get(f"{i}.{j}") if sp.get("fingerprint") is not None else None}
                for j, sp in enumerate(step["spans"])
            ]
        out.append(step)
    return out


def text_problem(steps: list[dict[str, Any]], row: Any) -> str | None:
    """Why a stored format-2 record's texts do not match the commitments its hash covers."""
    if row["erasure_id"] is not None:
        if row["texts"] is not None or row["input_text"] is not None or row["output_text"] is not None:
            return "it is marked erased but still holds text"
        return None
    salt = bytes.fromhex(row["salt"])
    t, f = parse_texts(row["texts"])
    used_t = used_f = 0
    for i, s in enumerate(steps):
        c = s.get("text")
        if c is not None:
            text = t.get(str(i))
            if text is None or commit(salt, f"s{i}.text", text) != c:
                return f"the text of step {i + 1} does not match its commitment"
            used_t += 1
        for j, sp in enumerate(s.get("spans") or ()):
            c = sp.get("fingerprint")
            if c is not None:
                fp = f.get(f"{i}.{j}")
                if fp is None or commit(salt, f"s{i}.{j}.fp", fp) != c:
                    return f"a span fingerprint of step {i + 1} does not match its commitment"
                used_f += 1
    if used_t != len(t) or used_f != len(f):
        return "it stores texts its steps do not commit to"
    return None


def top_commitments(row: Any) -> tuple[str | None, str | None]:
    """The input and output commitments of a stored format-2 record."""
    if row["erasure_id"] is not None:
        erased = orjson.loads(row["erased_commits"] or b"{}")
        return erased.get(INPUT), erased.get(OUTPUT)
    salt = bytes.fromhex(row["salt"])
    return _commit_opt(salt, INPUT, row[INPUT]), _commit_opt(salt, OUTPUT, row[OUTPUT])


def is_committed(row: Any) -> bool:
    """Is this stored request record in format 2 (salt present, or erased)?"""
    return row.get("salt") is not None or row.get("erasure_id") is not None


def erasure_canonical(row: Any) -> bytes:
    """What an erasure record's hash covers (its row, chain fields included, hashes not)."""
    at = row["at"]
    return dumps({
        "v": 1,
        "erasure_id": row["erasure_id"],
        "chain_id": row["chain_id"],
        "seq": row["seq"],
        "at": at if at.tzinfo is not None else at.replace(tzinfo=UTC),
        "actor": row["actor"],
        "scope": row["scope"],
        "selector": row["selector"],
        "request_ids": orjson.Fragment(row["request_ids"].encode()),
    })  # fmt: skip
