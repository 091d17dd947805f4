from __future__ import annotations

import pytest
from pydantic import ValidationError

from policies.checks.length import LengthCheck, estimate_tokens
from policies.schema import CheckSpec


def check(**options: object) -> LengthCheck:
    return LengthCheck(LengthCheck.Options.model_validate(options))


def test_chars_at_the_limit_pass_and_one_more_fires() -> None:
    c = check(max_chars=10)
    assert not c.scan("a" * 10).fired
    result = c.scan("a" * 11)
    assert result.fired
    assert result.score == 1.0
    assert result.detail["exceeded"] == ["chars"]
    assert result.detail["limits"] == {"chars": 10}
    assert result.detail["chars"] == 11


def test_score_is_the_fraction_of_the_limit_used() -> None:
    result = check(max_chars=10).scan("a" * 5)
    assert result.score == pytest.approx(0.5)
    assert not result.spans


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("abcd", 1), ("abcde", 2), ("a" * 400, 100), ("漢字漢字", 3), ("привет", 3)],
)
def test_token_estimate_is_utf8_bytes_over_four(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


def test_tokens_limit_counts_bytes_so_cjk_weighs_more_than_ascii() -> None:
    c = check(max_tokens=3)
    assert not c.scan("abcdefghijkl").fired  # 12 chars, 3 tokens
    result = c.scan("漢字漢字漢")  # 5 chars, 15 bytes, 4 tokens
    assert result.fired
    assert result.detail["exceeded"] == ["tokens"]
    assert result.detail["tokens"] == 4


def test_scan_cannot_count_messages_and_ignores_that_limit() -> None:
    result = check(max_messages=1).scan("one long joined text\n\nwith two messages")
    assert not result.fired
    assert "messages" not in result.detail


def test_scan_messages_counts_messages_and_sums_lengths() -> None:
    c = check(max_messages=2, max_chars=10)
    assert not c.scan_messages(["hello", "world"]).fired
    result = c.scan_messages(["a", "b", "c"])
    assert result.fired
    assert result.detail["exceeded"] == ["messages"]
    result = c.scan_messages(["hello", "world!"])
    assert result.detail["exceeded"] == ["chars"]
    assert result.detail["chars"] == 11


def test_several_limits_report_all_exceeded() -> None:
    result = check(max_chars=3, max_tokens=1).scan("abcdefgh")
    assert result.detail["exceeded"] == ["chars", "tokens"]


@pytest.mark.parametrize("options", [{}, {"max_chars": 0}, {"max_chars": -5}, {"max_words": 3}])
def test_invalid_options(options: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LengthCheck.Options.model_validate(options)


def test_policy_entry_builds_options() -> None:
    spec = CheckSpec.model_validate({"check": "length", "max_tokens": 4000, "action": "block"})
    assert isinstance(spec.options, LengthCheck.Options)
    assert spec.options.max_tokens == 4000
    with pytest.raises(ValidationError, match="max_toknes"):
        CheckSpec.model_validate({"check": "length", "max_toknes": 4000})
