"""PatternSet and the stream contract, through a small reference hold-back driver.

``drive`` plays the gateway's stream scanner: it keeps the unsent text, calls the matcher
on every upstream chunk with a little already-sent context, replaces the complete spans,
and releases everything before ``hold_from``. The other check tests reuse it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.checks.base import Span, StreamMatcher, StreamScan
from policies.checks.pattern_shape import Prefilter, Shape, shape_of
from policies.checks.patterns import Hit, PatternSet, PatternSpec, PatternStreamMatcher, check_regex, merge

CONTEXT_CHARS = 64


def redact(text: str, spans: Sequence[Span], offset: int = 0) -> str:
    out, cursor = [], 0
    for span in sorted(spans, key=lambda s: s.start):
        out.append(text[cursor : span.start - offset])
        out.append(f"<{span.entity_type}>")
        cursor = span.end - offset
    out.append(text[cursor:])
    return "".join(out)


@dataclass
class Feed:
    """What a client received: one released string per upstream chunk, plus the final flush."""

    released: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.released)


def drive(matcher: StreamMatcher, chunks: Sequence[str], context: int = CONTEXT_CHARS) -> Feed:
    feed = Feed()
    pending, sent_tail = "", ""
    for i in range(len(chunks) + 1):
        final = i == len(chunks)
        if not final:
            pending += chunks[i]
        buffer, start = sent_tail + pending, len(sent_tail)
        scan = matcher.scan(buffer, start, final)
        assert start <= scan.hold_from <= len(buffer)
        assert not final or scan.hold_from == len(buffer)
        previous_end = start
        for span in scan.spans:
            assert previous_end <= span.start < span.end <= scan.hold_from, (span, scan.hold_from)
            previous_end = span.end
        out = redact(buffer[start : scan.hold_from], scan.spans, offset=start)
        feed.released.append(out)
        pending = buffer[scan.hold_from :]
        feed.held.append(pending)
        sent_tail = (sent_tail + out)[-context:]
    return feed


def drive_many(matchers: Sequence[StreamMatcher], chunks: Sequence[str], context: int = 16) -> str:
    """Several matchers on one channel, as the gateway runs them: the earliest hold wins,
    a complete span that starts at or after it is put off (found again next time), and
    the context kept is raw text."""
    out, pending, ctx = [], "", ""
    for i in range(len(chunks) + 1):
        final = i == len(chunks)
        if not final:
            pending += chunks[i]
        buffer, start = ctx + pending, len(ctx)
        scans = [m.scan(buffer, start, final) for m in matchers]
        cut = len(buffer) if final else min(s.hold_from for s in scans)
        cursor = start
        for span in sorted((sp for s in scans for sp in s.spans), key=lambda sp: (sp.start, -sp.end)):
            if span.start >= cut or span.end <= cursor:
                continue
            out.append(buffer[cursor : max(cursor, span.start)] + f"<{span.entity_type}>")
            cursor = span.end
        if cursor < cut:
            out.append(buffer[cursor:cut])
            cursor = cut
        ctx, pending = buffer[max(0, cursor - context) : cursor], buffer[cursor:]
    return "".join(out)


def chunked(text: str, cuts: Sequence[int]) -> list[str]:
    points = sorted({c for c in cuts if 0 < c < len(text)})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


def fragments(value: str, size: int = 3) -> set[str]:
    return {value[i : i + size] for i in range(len(value) - size + 1)}


def assert_never_leaks(feed: Feed, value: str, surrounding: str) -> None:
    """No 3+ character piece of ``value`` reached the client (unless the rest of the text has it)."""
    for piece in fragments(value) - {f for f in fragments(value) if f in surrounding}:
        assert piece not in feed.text, f"fragment {piece!r} of a redacted value was released"


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


def test_shape_reads_prefix_required_text_length_and_white_space() -> None:
    shape = shape_of(r"(?<![\w-])sk-[A-Za-z0-9]{20,}(?![\w-])")
    assert shape.prefixes == {"sk-"}
    assert shape.required == ("sk-",)
    assert (shape.min_len, shape.spaceless) == (23, True)
    assert shape.after is not None and "a" not in shape.after and " " in shape.after and "-" not in shape.after
    assert shape.consumable is not None and " " not in shape.consumable
    # Digits are looked up as "0"; a class wider than a few dozen characters ends a prefix.
    assert shape_of(r"\d{3}-\d{4}").prefixes == {"000", "00\x7f", "0\x7f0", "0\x7f\x7f", "\x7f00", "\x7f0\x7f"} | {
        "\x7f\x7f0",
        "\x7f\x7f\x7f",
    }
    assert shape_of(r"[^\s]{24,}").prefixes is None
    # Prefixes that any word has (letters from classes) are not worth a lookup; letters
    # followed by a digit are (an IBAN's country code and check digits).
    random_token, iban = shape_of(r"[A-Za-z0-9]{24,}"), shape_of(r"(?i)(?<![A-Z0-9])[A-Z]{2}[0-9]{2}[A-Z0-9]{8,}")
    assert Prefilter([random_token, iban]).ungated == (0,)


def test_shape_folds_case_as_regex_does() -> None:
    # IGNORECASE lets `s` match "ſ" and `k` match the Kelvin sign: those become DEL.
    prefixes = shape_of(r"(?i)secret").prefixes
    assert prefixes is not None and {"sec", "SeC", "\x7fec"} <= prefixes
    assert "\x7fec" not in (shape_of(r"secret").prefixes or ())


def test_shape_counts_what_a_look_ahead_reads() -> None:
    # A partial match can end inside the look-ahead ("key " waits for "is"), so the
    # pattern is not spaceless although it consumes no space.
    assert not shape_of(r"key(?=\s+is\s)").spaceless
    assert shape_of(r"key(?![\w-])").spaceless


@pytest.mark.parametrize(
    ("pattern", "flags"),
    [
        (r"(?:secret){e<=1}", 0),  # fuzzy matching: the standard parser reads a literal
        (r"[[:digit:]]{9}", 0),  # a POSIX class: the standard parser reads a nested set
        (r"\p{Lu}{4}\d+", 0),  # a Unicode property
        (r"\m\w+@\w+", 0),  # start of word
        (r"(?|(a)|(b))", 0),  # branch reset
        (r"abc", int(regex.V1)),  # a flag the standard parser does not share
    ],
)
def test_shape_promises_nothing_for_syntax_only_regex_knows(pattern: str, flags: int) -> None:
    assert shape_of(pattern, flags) == Shape()


def test_prefilter_picks_the_patterns_that_can_start_in_the_unsent_text() -> None:
    pre = Prefilter([shape_of(s.regex, s.flags) for s in (TOKEN, EMAILISH)])
    assert (pre.gated, pre.ungated) == ((0,), (1,))
    prose = "You can find it in the docs. See you "
    data, base = pre.lookup(prose, 10)
    assert pre.candidates(data, base, 10, final=False) == ({}, len(prose))
    text = "the tok-abc12345 and tok-"
    data, base = pre.lookup(text, 0)
    assert pre.candidates(data, base, 0, final=False) == ({0: [4, 21]}, len(text))
    # A prefix only begun at the end: nothing runs, the hold starts there.
    text = "and then a to"
    data, base = pre.lookup(text, 0)
    assert pre.candidates(data, base, 0, final=False) == ({}, len(text) - 2)
    assert pre.candidates(data, base, 0, final=True) == ({}, len(text))
    # The look-behind `(?<![\w-])`: inside a word, "tok-" cannot start a match.
    text = "stok-abc12345"
    data, base = pre.lookup(text, 0)
    assert pre.candidates(data, base, 0, final=False) == ({}, len(text))


SHAPED = [
    TOKEN,
    EMAILISH,
    PatternSpec(
        "assign",
        "SECRET",
        r"""(?i)(?:password|secret)["']?[ \t]{0,5}[:=][ \t]{0,5}(?P<q>["'])(?P<secret>[^\n"']{3,40}?)(?P=q)""",
        group="secret",
    ),
    PatternSpec("env", "SECRET", r"(?m)^KEY[ \t]*=[ \t]*(?P<v>[^\s]{4,})", group="v"),
    PatternSpec("card", "CARD", r"\b\d{4}[ -]?\d{4}(?:[ -]?\d{4})?(?!\d)"),
    PatternSpec("random", "TOKEN", r"(?<![A-Za-z0-9])[A-Z0-9]{12,}(?![A-Za-z0-9])"),
    PatternSpec("said", "WORD", r"\bkey(?=\s+is\s)"),
    PatternSpec("mixed", "TOKEN", r"(?<![\w+/.-])[A-Za-z0-9+/_-]{12,}(?![\w+/=.-])"),
]
PIECES = [
    "tok-", "ab12cd34", "tok-zz9", "x", "@", "mail", ".io", " ", "  ", "\n", "password", "Secret", "ſecret",
    " = ", ":", '"', "'", "hunter2", "KEY", "KEY=", "4111", " 1111", "-2222", "AB12CD34EF56", "aB3dE5fG7hJ9",
    "Q9", "key", " is ", "是", "é", ",", ".", "-", "_", "0",
]  # fmt: skip


SHAPED_TEXTS = [
    "see aB3dE5fG7hJ9 now",
    "(aB3dE5fG7hJ9)",
    "use tok-ab12cd34, not stok-ab12cd34",
    "mail x@mail.io. or y@mail.io",
    "password = 'hunter22' ok",
    'ſecret: "hunter22"',
    "KEY=abcd1234\nKEY = xy\n",
    "card 4111 1111 2222, ok",
    "AB12CD34EF56.",
    "the key is here",
    "a key  is\tthere",
    "total:4111 1111 2222;",
    "(key is here)",
]


@pytest.mark.parametrize("text", SHAPED_TEXTS)
def test_prefiltered_stream_equals_running_every_pattern_on_samples(text: str) -> None:
    fast, every = PatternSet(SHAPED), PatternSet(SHAPED, prefilter=False)
    assert fast.find(text) == every.find(text)
    expected = redact(text, [h.span for h in every.find(text)])
    for chunks in (list(text), [text[:i] for i in (len(text),)], chunked(text, range(1, len(text), 3))):
        assert drive(PatternStreamMatcher(every), chunks).text == expected
        assert drive(PatternStreamMatcher(fast), chunks).text == expected


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.sampled_from(PIECES), min_size=1, max_size=40),
    cuts=st.lists(st.integers(min_value=1, max_value=300), max_size=30),
)
def test_prefiltered_stream_equals_running_every_pattern(parts: list[str], cuts: list[int]) -> None:
    text = "".join(parts)
    fast, every = PatternSet(SHAPED), PatternSet(SHAPED, prefilter=False)
    assert fast.find(text) == every.find(text)
    expected = redact(text, [h.span for h in every.find(text)])
    for chunks in (chunked(text, cuts), list(text)):
        assert drive(PatternStreamMatcher(every), chunks).text == expected
        assert drive(PatternStreamMatcher(fast), chunks).text == expected


def test_non_ascii_text_goes_through_the_prefilter() -> None:
    patterns = PatternSet(SHAPED)
    text = 'Zugang: ſecret = "hunter22" 電子メール x@exámple.com und 4111 2222 3333 ok'
    expected = redact(text, [h.span for h in patterns.find(text)])
    assert expected.count("<") == 3
    assert drive(PatternStreamMatcher(patterns), list(text)).text == expected
