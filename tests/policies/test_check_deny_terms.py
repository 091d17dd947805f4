from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from policies.checks.deny_terms import DenyTermsCheck, DenyTermsOptions
from policies.registry import check_class
from tests.stream_driver import assert_never_leaks, chunked, drive, redact


def make(**options: object) -> DenyTermsCheck:
    return DenyTermsCheck(DenyTermsOptions.model_validate(options))


def found(check: DenyTermsCheck, text: str) -> list[str]:
    return [text[s.start : s.end] for s in check.scan(text).spans]


def test_registry_names_this_class() -> None:
    assert check_class("deny_terms") is DenyTermsCheck


def test_case_insensitive_whole_words_by_default() -> None:
    check = make(terms=["phoenix", "Secret Sauce"])
    text = "PHOENIX launches; the secret   sauce stays. Phoenixes and secretsauce do not count."
    assert found(check, text) == ["PHOENIX", "secret   sauce"]
    result = check.scan(text)
    assert {s.entity_type for s in result.spans} == {"DENY_TERM"}
    assert result.score == 1.0


def test_multi_word_terms_span_line_breaks() -> None:
    assert found(make(terms=["project phoenix"]), "about Project\nPhoenix today") == ["Project\nPhoenix"]


def test_longer_term_wins_over_its_prefix() -> None:
    assert found(make(terms=["foo", "foo bar"]), "a foo bar b") == ["foo bar"]


def test_terms_with_punctuation_are_whole_words_too() -> None:
    check = make(terms=["C++", ".env"])
    assert found(check, "we use C++ and read .env files") == ["C++", ".env"]
    assert found(check, "MC++ and .envy") == []


def test_substring_and_case_sensitive_modes() -> None:
    assert found(make(terms=["cat"], whole_word=False), "concatenate") == ["cat"]
    assert found(make(terms=["Cat"], case_sensitive=True), "cat Cat") == ["Cat"]


def test_custom_entity_and_clean_text() -> None:
    check = make(terms=["phoenix"], entity="CODENAME")
    assert [s.entity_type for s in check.scan("phoenix").spans] == ["CODENAME"]
    assert not check.scan("nothing here").fired


@pytest.mark.parametrize(
    "options",
    [{"terms": []}, {"terms": ["  "]}, {"terms": ["a"], "entity": "bad entity"}, {"terms": ["a"], "x": 1}],
)
def test_invalid_options_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DenyTermsOptions.model_validate(options)


def test_stream_holds_a_possible_term_and_releases_other_words() -> None:
    check = make(terms=["project phoenix"])
    text = "We discussed project phoenix and projects in general. "
    feed = drive(check.stream_matcher(), list(text))
    assert feed.text == "We discussed <DENY_TERM> and projects in general. "
    assert_never_leaks(feed, "phoenix", text.replace("phoenix", ""))
    # After a space nothing waits, except `project ` itself, which may still become the term.
    for i, ch in enumerate(text):
        if ch == " ":
            assert feed.held[i] == ("project " if text[: i + 1].endswith("project ") else "")


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=70), max_size=25))
def test_stream_matches_whole_text_scan_for_any_chunking(cuts: list[int]) -> None:
    check = make(terms=["phoenix", "secret sauce", "C++"])
    text = "Phoenix rises; secret sauce, C++ code, phoenixes, secret sauces and PHOENIX."
    expected = redact(text, check.scan(text).spans)
    assert expected.count("<DENY_TERM>") == 4
    assert drive(check.stream_matcher(), chunked(text, cuts)).text == expected
