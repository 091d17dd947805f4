"""Salted commitments: the chain covers a commitment of each stored text, not the text.

A request record in format 2 is hashed with its texts replaced by commitments
``SHA-256(salt || name || 0x00 || value)``, hex, under 16 random bytes of ``salt`` per record:

* ``input_text`` and ``output_text`` each by their own commitment (null stays null);
* the step texts and span fingerprints together, as the canonical JSON document that holds
  them by position (``{"f": {"3.0": fp}, "t": {"5": text}}``), committed as ``texts`` (a
  top-level field of the hashed form; null when there are none). In the steps document each
  step's ``text`` and each span's ``fingerprint`` are null.

One commitment for the steps' texts, rather than one per step, keeps the writer's cost per
record near what it was (a 20-step record has ~15 texts; hashing each costs more than the
rest of preparing it); an erasure removes a whole record's texts in any case.

What is stored beside the chain: ``audit_requests.steps`` (byte for byte the hashed steps
document, as before), ``texts`` (the document above), the ``input_text`` / ``output_text``
columns and ``salt`` (hex). Erasing a record (``audit.read.erasure``) deletes the texts, the
fingerprints and the salt and keeps the three commitments (``erased_commits``), so the record
still hashes to what its chain says while the text is gone; without the salt a commitment
cannot be tested against guesses, however short the text was. Records written before format 2
(``salt`` null, never erased) are hashed over their texts as before and stay verifiable, but
cannot be erased without breaking their chain: ``erase`` leaves them and says so.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Final

import orjson

FORMAT: Final = 2
SALT_BYTES: Final = 16
_CANON: Final = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z
INPUT, OUTPUT, TEXTS = "input_text", "output_text", "texts"


class _SaltPool(threading.local):
    buf: bytes = b""
    at: int = 0


_POOL = _SaltPool()
os.register_at_fork(after_in_child=lambda: setattr(_POOL, "buf", b""))


def new_salt() -> bytes:
    """16 bytes from the OS's CSPRNG, drawn 4 KiB at a time (one system call per 256 records);
    a forked child draws its own, so no two processes ever share a salt."""
    pool = _POOL
    at = pool.at
    if at + SALT_BYTES > len(pool.buf):
        pool.buf, at = os.urandom(SALT_BYTES * 256), 0
    pool.at = at + SALT_BYTES
    return pool.buf[at : at + SALT_BYTES]


def commit(salt: bytes, path: str, value: str) -> str:
    """Raises ``ValueError`` for text the database cannot hold as is (NUL, lone surrogates):
    the writer's fast path then takes the careful one, which normalizes it first."""
    if "\x00" in value:
        raise ValueError("NUL in text")
    return commit_bytes(salt, path, value.encode())


def commit_bytes(salt: bytes, path: str, value: bytes) -> str:
    return hashlib.sha256(b"%s%s\x00%s" % (salt, path.encode(), value)).hexdigest()


_INPUT_TAG: Final = b"input_text\x00"
_OUTPUT_TAG: Final = b"output_text\x00"
_TEXTS_TAG: Final = b"texts\x00"


def _text_bytes(value: str) -> bytes:
    if "\x00" in value:
        raise ValueError("NUL in text")
    return value.encode()


def _continue(base: Any, tag: bytes, value: bytes) -> str:
    """``commit_bytes`` from a hash already fed the salt."""
    h = base.copy()
    h.update(tag)
    h.update(value)
    return str(h.hexdigest())


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


_NUL_ESCAPE: Final = b"\\u0000"


def commit_record(
    obj: dict[str, Any],
    salt: bytes | None = None,
    *,
    texts: dict[str, str] | None = None,
    fps: dict[str, str] | None = None,
) -> tuple[dict[str, Any], Plain]:
    """The record object as hashed (format 2), and what it stands for.

    Takes ``obj`` over: its step and span objects are changed in place (their texts and
    fingerprints set to null), which spares a copy of each on the writer's hot path.
    ``texts`` and ``fps``: already taken out (the fast path does it as it builds the steps).
    """
    salt = salt if salt is not None else new_salt()
    if texts is None or fps is None:
        texts, fps = {}, {}
        for i, s in enumerate(obj["steps"]):
            text = s["text"]
            if text is not None:
                texts[str(i)] = text
                s["text"] = None
            for j, sp in enumerate(s["spans"] or ()):
                fp = sp["fingerprint"]
                if fp is not None:
                    fps[f"{i}.{j}"] = fp
                    sp["fingerprint"] = None
    base = hashlib.sha256(salt)  # each commitment continues a copy of it
    doc = commitment = None
    if texts or fps:
        doc = b'{"f":%s,"t":%s}' % (dumps(fps), dumps(texts))  # canonical: keys sorted, no spaces
        if _NUL_ESCAPE in doc:  # NUL in a step text: the careful path replaces it
            raise ValueError("NUL in a step text")
        commitment = _continue(base, _TEXTS_TAG, doc)
    inp, out = obj[INPUT], obj[OUTPUT]
    committed = obj  # taken over: changed in place rather than copied
    committed["v"] = FORMAT
    committed[TEXTS] = commitment
    if inp is not None:
        committed[INPUT] = _continue(base, _INPUT_TAG, _text_bytes(inp))
    if out is not None:
        committed[OUTPUT] = _continue(base, _OUTPUT_TAG, _text_bytes(out))
    return committed, Plain(salt.hex(), inp, out, doc, fps)


def parse_texts(texts: str | bytes | None) -> tuple[dict[str, str], dict[str, str]]:
    """(step texts by position, span fingerprints by "step.span") from a ``texts`` document."""
    if not texts:
        return {}, {}
    doc = orjson.loads(texts)
    return doc.get("t") or {}, doc.get("f") or {}


def plain_steps(steps: list[dict[str, Any]], texts: str | bytes | None) -> list[dict[str, Any]]:
    """A format-2 steps document with its texts and fingerprints put back (null where erased)."""
    t, f = parse_texts(texts)
    if not t and not f:
        return steps
    out = []
    for i, s in enumerate(steps):
        text = t.get(str(i))
        spans = s.get("spans")
        if text is None and not spans:
            out.append(s)
            continue
        step = dict(s)
        step["text"] = text
        if spans:
            step["spans"] = [{**sp, "fingerprint": f.get(f"{i}.{j}")} for j, sp in enumerate(spans)]
        out.append(step)
    return out


def text_problem(row: Any) -> str | None:
    """Why a stored format-2 record's texts are not what its hash covers, when the hash itself
    cannot show it: an erased record that still holds text."""
    if row["erasure_id"] is not None and (
        row["texts"] is not None or row["input_text"] is not None or row["output_text"] is not None
    ):
        return "it is marked erased but still holds text"
    return None


def top_commitments(row: Any) -> tuple[str | None, str | None, str | None]:
    """The input, output and step-texts commitments of a stored format-2 record."""
    if row["erasure_id"] is not None:
        erased = orjson.loads(row["erased_commits"] or b"{}")
        return erased.get(INPUT), erased.get(OUTPUT), erased.get(TEXTS)
    salt = bytes.fromhex(row["salt"])
    texts = row["texts"]
    return (
        _commit_opt(salt, INPUT, row[INPUT]),
        _commit_opt(salt, OUTPUT, row[OUTPUT]),
        None if texts is None else commit_bytes(salt, TEXTS, texts.encode()),
    )


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
