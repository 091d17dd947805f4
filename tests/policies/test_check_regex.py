from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from policies.checks.regex_check import RegexCheck, RegexOptions
from policies.engines import patterns
from policies.registry import check_class
from policies.schema import CheckSpec
from tests.stream_driver import assert_never_leaks, chunked, drive, redact


def make(**options: object) -> RegexCheck:
    return RegexCheck(RegexOptions.model_validate(options))


def test_registry_names_this_class() -> None:
    assert check_class("regex") is RegexCheck
    assert RegexCheck.supports_stream()


def test_list_of_patterns_finds_spans_with_the_default_entity() -> None:
    check = make(patterns=[r"ACME-\d{4,}(?!\d)", r"\bproject\s+falcon\b"])
    text = "Ticket ACME-12345 is about Project Falcon, not ACME-12."
    result = check.scan(text)
    assert result.fired
    assert [text[s.start : s.end] for s in result.spans] == ["ACME-12345"]
    assert {s.entity_type for s in result.spans} == {"REGEX"}
    assert result.detail["rules"] == ["pattern_0"]


def test_named_patterns_entity_and_ignorecase_flag() -> None:
    check = make(patterns={"codename": r"\bproject\s+falcon\b"}, entity="CODENAME", flags=["ignorecase"])
    result = check.scan("About Project  Falcon.")
    assert [(s.start, s.entity_type) for s in result.spans] == [(6, "CODENAME")]
    assert result.detail["rules"] == ["codename"]
    assert not make(patterns=[r"\bproject\s+falcon\b"]).scan("About Project Falcon.").fired


def test_clean_text_does_not_fire() -> None:
    result = make(patterns=[r"ACME-\d+"]).scan("nothing to see")
    assert not result.fired and result.spans == ()


@pytest.mark.parametrize("bad", ["a(b", "[z-a]", "(?P<x>a)(?P<x>b)x{2,1}"])
def test_invalid_pattern_is_an_option_error(bad: str) -> None:
    with pytest.raises(ValidationError, match="invalid regex"):
        RegexOptions.model_validate({"patterns": [bad]})


def test_invalid_pattern_is_reported_when_the_policy_loads() -> None:
    with pytest.raises(ValidationError, match="invalid regex"):
        CheckSpec.model_validate({"check": "regex", "patterns": ["(unclosed"], "action": "redact"})
    spec = CheckSpec.model_validate({"check": "regex", "patterns": ["ok"], "action": "redact"})
    assert isinstance(spec.options, RegexOptions)


def test_option_shapes_are_strict() -> None:
    with pytest.raises(ValidationError):
        RegexOptions.model_validate({"patterns": []})
    with pytest.raises(ValidationError):
        RegexOptions.model_validate({"patterns": ["x"], "flags": ["unicorn"]})
    with pytest.raises(ValidationError):
        RegexOptions.model_validate({"patterns": ["x"], "entity": "lower case"})
    with pytest.raises(ValidationError):
        RegexOptions.model_validate({"patterns": ["x"], "colour": "red"})


def test_stream_one_character_at_a_time_redacts_without_leaking() -> None:
    check = make(patterns=[r"ACME-\d{4,}(?!\d)"], entity="TICKET")
    text = "See ACME-98765 and ACME-55501 for details."
    feed = drive(check.stream_matcher(), list(text))
    assert feed.text == "See <TICKET> and <TICKET> for details."
    assert_never_leaks(feed, "ACME-98765", "See  and ACME-55501 for details.")


def test_catastrophic_backtracking_fails_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patterns, "REGEX_TIMEOUT_S", 0.05)
    check = make(patterns=[r"^(a|aa)+$"])
    with pytest.raises(TimeoutError):
        check.scan("a" * 64 + "b")
    with pytest.raises(TimeoutError):
        check.stream_matcher().scan("a" * 64 + "b", 0, final=False)


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=60), max_size=20))
def test_stream_matches_whole_text_scan_for_any_chunking(cuts: list[int]) -> None:
    check = make(patterns={"ticket": r"ACME-\d{4,}(?!\d)", "code": r"\bfalcon\b"}, flags=["ignorecase"])
    text = "acme-1234 flies with Falcon; ACME-99 does not. falconry is fine."
    expected = redact(text, check.scan(text).spans)
    assert drive(check.stream_matcher(), chunked(text, cuts)).text == expected
