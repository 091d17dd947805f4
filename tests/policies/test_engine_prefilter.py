"""The stream prefilter (policies/engines/prefilter.py): where patterns may start, and a prefiltered
stream redacts exactly what running every pattern does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.engines.patterns import PatternSet, PatternSpec, PatternStreamMatcher
from policies.engines.prefilter import Prefilter
from policies.engines.regex_shape import shape_of
from tests.policies.test_engine_patterns import EMAILISH, TOKEN
from tests.stream_driver import chunked, drive, redact


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
