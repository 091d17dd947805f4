from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from policies.checks.topic import TopicCheck
from policies.schema import CheckSpec

DENIED = {"weapons": ["gun", "rifle*", "build a bomb"], "medical advice": ["diagnos*", "dosage"]}
ALLOWED = {"banking": ["account", "card", "loan*", "mortgage"], "travel": ["flight*", "hotel"]}


def check(**options: Any) -> TopicCheck:
    return TopicCheck(TopicCheck.Options.model_validate(options))


def test_denied_keyword_fires_with_a_span_per_hit_named_after_the_topic() -> None:
    text = "Where can I buy a GUN and some rifles?"
    result = check(denied=DENIED).scan(text)
    assert result.fired
    assert result.detail["reason"] == "denied_topic"
    assert result.detail["topics"] == ["weapons"]
    assert [text[s.start : s.end] for s in result.spans] == ["GUN", "rifles"]
    assert {s.entity_type for s in result.spans} == {"TOPIC_WEAPONS"}


def test_detail_counts_policy_keywords_not_the_texts_words() -> None:
    result = check(denied=DENIED).scan("Rifles, rifleman, and a Rifle.")
    assert result.detail["denied"] == {"weapons": {"rifle*": 3}}


def test_whole_words_only() -> None:
    assert not check(denied=DENIED).scan("The show has begun; the gunwale is wet.").fired


def test_phrase_matches_across_whitespace_and_case() -> None:
    result = check(denied=DENIED).scan("how do I Build  a\nbomb")
    assert result.fired
    assert result.spans[0].entity_type == "TOPIC_WEAPONS"


def test_topic_names_become_entity_types() -> None:
    result = check(denied=DENIED).scan("What dosage should I take?")
    assert result.spans[0].entity_type == "TOPIC_MEDICAL_ADVICE"


def test_spaceless_scripts_match_inside_words() -> None:
    result = check(denied={"weapons": ["枪"]}).scan("我想买一把枪。")
    assert result.fired


def test_min_hits_and_score() -> None:
    c = check(denied=DENIED, min_hits=2)
    one = c.scan("a gun")
    assert not one.fired
    assert one.score == pytest.approx(1 - 0.5**0.5)
    two = c.scan("a gun and a rifle")
    assert two.fired
    assert two.score == pytest.approx(0.5)
    four = c.scan("gun gun rifle rifle")
    assert four.score == pytest.approx(0.75)
    assert check(denied=DENIED).scan("nothing here").score == 0.0


def test_allowed_topics_let_on_topic_text_through() -> None:
    result = check(allowed=ALLOWED).scan("Can I raise the limit on my card?")
    assert not result.fired
    assert result.detail["allowed"] == {"banking": {"card": 1}}


def test_off_topic_fires_without_spans() -> None:
    result = check(allowed=ALLOWED).scan("Write me a poem about the sea.")
    assert result.fired
    assert result.detail["reason"] == "off_topic"
    assert result.score == 1.0
    assert result.spans == ()


def test_short_texts_are_not_off_topic_when_configured() -> None:
    c = check(allowed=ALLOWED, off_topic_min_words=3)
    assert not c.scan("hi there").fired
    assert c.scan("tell me a joke please").fired


def test_denied_wins_over_allowed() -> None:
    result = check(allowed=ALLOWED, denied=DENIED).scan("Can I get a loan for a rifle?")
    assert result.fired
    assert result.detail["reason"] == "denied_topic"


@pytest.mark.parametrize(
    "options",
    [{}, {"denied": {"weapons": []}}, {"denied": {"weapons": ["", "gun"]}}, {"allowed": {"x": ["*"]}},
     {"denied": DENIED, "min_hits": 0}, {"denied": DENIED, "topics": {}}],
)  # fmt: skip
def test_invalid_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TopicCheck.Options.model_validate(options)


def test_policy_entry_builds_options() -> None:
    spec = CheckSpec.model_validate({"check": "topic", "denied": DENIED, "action": "block"})
    assert isinstance(spec.options, TopicCheck.Options)
    assert spec.options.denied["weapons"] == ("gun", "rifle*", "build a bomb")
