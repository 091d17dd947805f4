"""PatternSet (policies/engines/patterns.py) and the stream contract, through the reference
hold-back driver in ``tests.stream_driver``."""

from __future__ import annotations

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.checks.base import Span, StreamMatcher, StreamScan
from policies.engines.patterns import Hit, PatternSet, PatternSpec, PatternStreamMatcher, check_regex, merge
from tests.stream_driver import CONTEXT_CHARS, assert_never_leaks, chunked, drive, drive_many, redact

TOKEN = PatternSpec(name="tok", entity_type="TOKEN", regex=r"(?<![\w-])tok-[a-z0-9]{8,}(?![\w-])")
EMAILISH = PatternSpec(name="mail", entity_type="EMAIL", regex=r"\b\w+@\w+(?:\.\w+)+\b")
PATTERNS = PatternSet([TOKEN, EMAILISH])


def test_find_reports_spans_and_rules() -> None:
    text = "send tok-abc12345 to me@example.com now"
    hits = PATTERNS.find(text)
    assert [(text[h.span.start : h.span.end], h.span.entity_type, h.rule) for h in hits] == [
        ("tok-abc12345", "TOKEN", "tok"),
        ("me@example.com", "EMAIL", "mail"),
    ]


def test_validator_sets_the_score_or_drops_the_match() -> None:
    def even_digits(value: str) -> float | None:
        return 0.9 if int(value) % 2 == 0 else None

    patterns = PatternSet([PatternSpec("n", "NUM", r"\b\d{4}\b", validate=even_digits)])
    hits = patterns.find("1234 1235")
    assert [(h.span.start, h.span.score) for h in hits] == [(0, 0.9)]


def test_context_word_lifts_a_weak_pattern_over_the_threshold() -> None:
    weak = PatternSpec("ssn", "SSN", r"\b\d{9}\b", score=0.05, context=("ssn",))
    patterns = PatternSet([weak], threshold=0.4)
    assert patterns.find("order 123456789 shipped") == []
    (hit,) = patterns.find("my ssn is 123456789")
    assert hit.span.score == 0.4


def test_group_and_end_groups_pick_the_span() -> None:
    keyed = PatternSpec("kv", "SECRET", r"key=(?P<secret>\w+)", group="secret")
    (hit,) = PatternSet([keyed]).find("a key=hunter2 b")
    assert (hit.span.start, hit.span.end) == (6, 13)

    # Trailing optional group fails validation, so the shorter end is taken (like IBAN).
    def only_letters(value: str) -> float | None:
        return 1.0 if value.isalpha() else None

    tail = PatternSpec("t", "T", r"([a-z]+)((?: \d)?)", end_groups=(2, 1), validate=only_letters)
    (hit,) = PatternSet([tail]).find("abc 1")
    assert (hit.span.start, hit.span.end) == (0, 3)


def test_overlapping_hits_merge_into_one_span_named_by_the_strongest() -> None:
    weak = Hit(Span(0, 10, "A", 0.5), "a", 0)
    strong = Hit(Span(5, 20, "B", 0.9), "b", 2)
    apart = Hit(Span(20, 25, "C", 1.0), "c", 20)
    assert merge([apart, strong, weak]) == [Hit(Span(0, 20, "B", 0.9), "b", 0), apart]


def test_invalid_regex_is_a_value_error_naming_the_pattern() -> None:
    with pytest.raises(ValueError, match=r"invalid regex 'a\(b'"):
        check_regex("a(b")


def test_stream_holds_a_partial_match_and_releases_ordinary_text() -> None:
    matcher = PatternStreamMatcher(PATTERNS)
    buffer = "Hello there, your key is tok-ab"
    scan = matcher.scan(buffer, 0, final=False)
    assert scan.spans == ()
    assert buffer[scan.hold_from :] == "tok-ab"


def test_stream_holds_a_complete_match_touching_the_end_until_final() -> None:
    matcher = PatternStreamMatcher(PATTERNS)
    buffer = "write to me@example.co"  # could still become .com
    scan = matcher.scan(buffer, 0, final=False)
    assert buffer[scan.hold_from :] == "me@example.co"
    final = matcher.scan(buffer, 0, final=True)
    assert [(s.start, s.end) for s in final.spans] == [(9, len(buffer))]
    assert final.hold_from == len(buffer)


def test_stream_defers_a_complete_span_that_overlaps_a_held_tail() -> None:
    short = PatternSpec("short", "S", r"ab\d\d")
    longer = PatternSpec("long", "L", r"\d\d-\w+")
    matcher = PatternStreamMatcher(PatternSet([short, longer]))
    # `ab12` is complete, but `12-xy` may still grow over it: both wait, from `ab12`.
    scan = matcher.scan("see ab12-xy", 0, final=False)
    assert (scan.spans, scan.hold_from) == ((), 4)
    final = matcher.scan("see ab12-xy", 0, final=True)
    assert [(s.start, s.end, s.entity_type) for s in final.spans] == [(4, 11, "L")]


def test_stream_ignores_matches_in_the_already_sent_context() -> None:
    matcher = PatternStreamMatcher(PATTERNS)
    buffer = "tok-abc12345 sent. new text"
    scan = matcher.scan(buffer, buffer.index("new"), final=True)
    assert scan.spans == ()


def test_ordinary_sentences_are_not_held() -> None:
    text = "The quick brown fox jumps over the lazy dog. It was a sunny day, and all was well. "
    feed = drive(PatternStreamMatcher(PATTERNS), list(text))
    # Every chunk ending in a space has nothing held: a word waits only until it ends.
    for chunk_end, held in zip(range(1, len(text) + 1), feed.held, strict=False):
        if text[chunk_end - 1] == " ":
            assert held == "", (text[:chunk_end], held)
    assert feed.text == text


def test_one_character_feed_never_releases_a_fragment() -> None:
    value = "tok-q7w8e9r0t1"
    text = f"Your token is {value}, keep it safe. Mail bob@example.org for help."
    feed = drive(PatternStreamMatcher(PATTERNS), list(text))
    assert feed.text == "Your token is <TOKEN>, keep it safe. Mail <EMAIL> for help."
    assert_never_leaks(feed, value, text.replace(value, ""))
    assert_never_leaks(feed, "bob@example.org", text.replace("bob@example.org", ""))


def test_a_span_put_off_by_another_matcher_is_found_again() -> None:
    # The password completes at "@h"; the e-mail-like pattern still holds from "pw123",
    # so the caller puts the password off and sends "url://u:". The next call must find
    # the match again although it began in text that has been sent.
    url = PatternSet([PatternSpec("url", "SECRET", r"url://\w+:(?P<secret>[a-z0-9]+)@", group="secret")])
    mail = PatternSet([PatternSpec("mail", "EMAIL", r"\b[a-z0-9]+@[a-z]+\.com\b")])
    text = "see url://u:pw123@host.internal: ok"
    matchers = [PatternStreamMatcher(url), PatternStreamMatcher(mail)]
    assert drive_many(matchers, list(text)) == "see url://u:<SECRET>@host.internal: ok"


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=200), max_size=40))
def test_any_chunking_gives_the_same_output_as_a_whole_text_scan(cuts: list[int]) -> None:
    text = "alpha tok-0a1b2c3d4e beta gamma@delta.io epsilon tok-zz99yy88xx- zeta tok-short end"
    expected = redact(text, [h.span for h in PATTERNS.find(text)])
    feed = drive(PatternStreamMatcher(PATTERNS), chunked(text, cuts))
    assert feed.text == expected
    assert_never_leaks(feed, "tok-0a1b2c3d4e", text.replace("tok-0a1b2c3d4e", ""))


def test_work_per_call_is_bounded_by_the_buffer_passed() -> None:
    """The matcher sees only what the driver passes: unsent text plus bounded context."""
    seen: list[int] = []

    class Recording(StreamMatcher):
        def __init__(self) -> None:
            self.inner = PatternStreamMatcher(PATTERNS)

        def scan(self, buffer: str, start: int, final: bool) -> StreamScan:
            seen.append(len(buffer))
            return self.inner.scan(buffer, start, final)

    text = "plain words only here. " * 200
    drive(Recording(), list(text))
    assert max(seen) <= CONTEXT_CHARS + len("words ") + 1


def test_spans_use_regex_module_semantics() -> None:
    # Variable-length look-behind is a `regex` feature that presidio's patterns rely on.
    spec = PatternSpec("vlb", "X", r"(?<=\bid[:=]\s{0,3})\d+")
    assert [h.span.start for h in PatternSet([spec]).find("id:  42")] == [5]
    assert regex.compile(spec.regex).search("id=7") is not None


# -- the stream prefilter: shapes read from parse trees, and the patterns they skip -------
