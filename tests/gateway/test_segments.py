"""gateway.pipeline.segments on its own: which strings of a request a check reads, by role,
how its spans map back to the whole request, and how redactions are written into the body."""

from __future__ import annotations

from typing import Any

from gateway.pipeline.segments import SEPARATOR, chat_segments, mask_spans, merge, prompt_segments
from policies.checks.base import Span

DOCUMENT = "```\n" + "Quarterly report. Revenue grew in every region this year. " * 3 + "\n```"


def _body() -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [{"type": "text", "text": "Summarise this:\n" + DOCUMENT}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"name": "lookup", "arguments": '{"q": "alice@example.com"}'}}],
            },
            {"role": "tool", "content": "result: 42"},
        ]
    }


def test_every_string_a_model_sees_is_a_segment_with_its_role_and_message() -> None:
    segments = chat_segments(_body())
    assert [(s.role, s.message) for s in segments.items] == [("system", 0), ("user", 1), ("assistant", 2), ("tool", 3)]
    assert segments.text == SEPARATOR.join(s.text for s in segments.items)
    for seg in segments.items:
        assert segments.text[seg.offset : seg.offset + len(seg.text)] == seg.text
    user = segments.items[1]
    assert len(user.documents) == 1  # the fenced block is a quoted document


def test_a_view_reads_only_its_roles_and_blanks_quoted_documents_for_user_only_checks() -> None:
    segments = chat_segments(_body())
    user_only = segments.view({"user"})
    assert len(user_only.pieces) == 1
    assert "Revenue" not in user_only.text and user_only.text.startswith("Summarise this:")
    assert len(user_only.text) == len(segments.items[1].text)  # blanked, offsets kept
    documents = segments.view({"document", "tool"})
    assert [p.role for p in documents.pieces] == ["document", "tool"]
    assert "Revenue grew" in documents.pieces[0].text
    assert segments.view({"system"}).texts == ["You are a helpful assistant."]


def test_spans_found_in_a_view_map_back_to_the_whole_request() -> None:
    segments = chat_segments(_body())
    view = segments.view({"tool", "assistant"})
    start = view.text.index("alice@example.com")
    (span,) = view.to_request([Span(start, start + len("alice@example.com"), "EMAIL_ADDRESS", 1.0)])
    assert segments.text[span.start : span.end] == "alice@example.com"
    # A span running past its piece is cut at the piece's end.
    piece = view.pieces[0]
    (cut,) = view.to_request([Span(piece.view_offset, piece.view_offset + len(piece.text) + 5, "X", 1.0)])
    assert cut.end - cut.start == len(piece.text)


def test_redaction_is_written_back_into_the_body_strings() -> None:
    body = _body()
    segments = chat_segments(body)
    at = segments.text.index("alice@example.com")
    segments.redact([Span(at, at + len("alice@example.com"), "EMAIL_ADDRESS", 1.0)])
    assert body["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"q": "<EMAIL_ADDRESS>"}'
    assert body["messages"][1]["content"][0]["text"].startswith("Summarise this:")  # untouched


def test_prompt_and_input_lists_are_user_segments() -> None:
    body: dict[str, Any] = {"input": ["first secret", "second", 7]}
    segments = prompt_segments(body, "input")
    assert [s.text for s in segments.items] == ["first secret", "second"]
    assert {s.role for s in segments.items} == {"user"} and segments.items[0].message is None
    at = segments.text.index("secret")
    segments.redact([Span(at, at + 6, "SECRET", 1.0)])
    assert body["input"] == ["first <SECRET>", "second", 7]


def test_overlapping_spans_merge_and_mask_once() -> None:
    spans = [Span(0, 5, "A", 0.5), Span(3, 9, "B", 0.9), Span(12, 14, "C", 1.0)]
    merged = merge(spans)
    assert [(s.start, s.end, s.entity_type) for s in merged] == [(0, 9, "A"), (12, 14, "C")]
    assert merged[0].score == 0.9
    assert mask_spans("0123456789abcdef", spans) == "<A>9ab<C>ef"
