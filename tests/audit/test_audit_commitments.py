"""Salted commitments: what the chain covers instead of the texts."""

from __future__ import annotations

import orjson

from audit.canonical import canonical
from audit.commitments import commit, commit_bytes, commit_record, parse_texts, plain_steps
from audit.write.bulk import record_rows
from audit.write.prepared import Prepared, prepare, prepare_record_obj
from tests.audit_db import make_record


def test_the_hashed_form_holds_no_text_and_each_record_has_its_own_salt() -> None:
    r = make_record(0)
    a, b = prepare(r), prepare(r)
    assert a.plain is not None and b.plain is not None
    assert a.plain.salt != b.plain.salt
    body = a.canonical()
    for text in (r.input_text, r.output_text, r.steps[5].text, r.steps[0].spans[0].fingerprint):
        assert text is not None and text.encode() not in body
    assert orjson.loads(body)["v"] == 2
    assert orjson.loads(body)["input_text"] == commit(bytes.fromhex(a.plain.salt), "input_text", r.input_text)


def test_texts_and_fingerprints_come_back_from_beside_the_document() -> None:
    r = make_record(1)
    expected = orjson.loads(canonical(prepare_record_obj(r)))["steps"]
    committed, plain = commit_record(prepare_record_obj(r), b"\x01" * 16)
    texts, fps = parse_texts(plain.texts)
    assert texts["5"] == r.steps[5].text and fps == {"0.0": "f" * 32}
    restored = plain_steps(orjson.loads(canonical(committed))["steps"], plain.texts)
    assert restored == expected
    hashed = orjson.loads(canonical(committed))
    assert all(s["text"] is None for s in hashed["steps"])  # texts are in the "texts" commitment
    assert hashed["texts"] == commit_bytes(b"\x01" * 16, "texts", plain.texts or b"")
    # erased: texts gone, so the steps read back with nulls, never with the commitments
    erased = plain_steps(orjson.loads(canonical(committed))["steps"], None)
    assert all(s["text"] is None for s in erased)
    assert erased[0]["spans"][0]["fingerprint"] is None


def test_a_spool_line_from_before_commitments_is_committed_when_replayed() -> None:
    r = make_record(2)
    old = canonical(prepare_record_obj(r))  # what a writer before migration 0005 spooled
    line = old[:-1] + b',"t":"requests"}\n'
    p = Prepared.from_line(line)
    assert p.plain is not None and p.plain.input_text == r.input_text
    assert orjson.loads(p.canonical())["v"] == 2
    rows = record_rows(p, "sqlite")
    assert rows[1][11] == r.input_text  # the input_text column
    again = Prepared.from_line(p.spool_line())
    assert again.canonical() == p.canonical()
