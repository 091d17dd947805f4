"""Span highlighting: offsets of the checked text mapped onto the stored (masked) text."""

from __future__ import annotations

from dashboard.highlight import Layer, Mark, locate, to_html

RAW = "mail bob@x.com or call 555-1234 now, bob@x.com"
EMAILS = [
    Mark(RAW.index("bob"), RAW.index("bob") + 9, "EMAIL"),
    Mark(RAW.rindex("bob"), RAW.rindex("bob") + 9, "EMAIL"),
]
PHONE = Mark(RAW.index("555"), RAW.index("555") + 8, "PHONE", "pii", "flag")


def shown(text: str, marks: tuple[Mark, ...]) -> list[tuple[str, str]]:
    return [(text[m.start : m.end], m.entity) for m in marks]


def test_spans_after_a_redaction_are_shifted() -> None:
    stored = RAW.replace("bob@x.com", "<EMAIL>")
    found = locate(stored, [Layer(EMAILS, [*EMAILS, PHONE])])
    assert found.exact
    assert shown(stored, found.marks) == [("<EMAIL>", "EMAIL"), ("555-1234", "PHONE"), ("<EMAIL>", "EMAIL")]


def test_text_stored_in_full_keeps_the_original_offsets() -> None:
    found = locate(RAW, [Layer(EMAILS, [*EMAILS, PHONE])])
    assert found.exact
    assert shown(RAW, found.marks) == [("bob@x.com", "EMAIL"), ("555-1234", "PHONE"), ("bob@x.com", "EMAIL")]


def test_two_layers_stream_then_output() -> None:
    sent = RAW.replace("555-1234", "<PHONE>")
    stored = sent.replace("bob@x.com", "<EMAIL>")
    stream = Layer([PHONE], [PHONE])
    in_sent = [
        Mark(sent.index("bob"), sent.index("bob") + 9, "EMAIL"),
        Mark(sent.rindex("bob"), sent.rindex("bob") + 9, "EMAIL"),
    ]
    output = Layer(in_sent, [*in_sent, Mark(0, 4, "WORD")])
    found = locate(stored, [stream, output])
    assert found.exact
    assert shown(stored, found.marks) == [
        ("mail", "WORD"),
        ("<EMAIL>", "EMAIL"),
        ("<PHONE>", "PHONE"),
        ("<EMAIL>", "EMAIL"),
    ]


def test_offsets_that_do_not_fit_fall_back_to_placeholders() -> None:
    found = locate("nothing <CARD> here", [Layer([Mark(50, 60, "EMAIL")], [Mark(50, 60, "EMAIL")])])
    assert not found.exact
    assert found.notes
    assert [(m.start, m.end, m.entity) for m in found.marks] == [(8, 14, "CARD")]


def test_html_is_escaped() -> None:
    text = "<script>alert(1)</script> card <CARD>"
    out = to_html(text, [Mark(text.index("<CARD>"), len(text), "CARD", "pii", "redact")])
    assert "<script>" not in out
    assert "&lt;script&gt;" in out
    assert "&lt;CARD&gt;<sub" in out
    assert 'title="CARD · pii · redact"' in out
