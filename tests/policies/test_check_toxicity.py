"""toxicity: abuse fires, neutral text passes, the lexicon adds up by noisy-OR."""

from __future__ import annotations

import pytest

from policies.checks.base import Check
from policies.checks.toxicity import lexicon_key, lexicon_score, load_lexicon
from policies.registry import check_class
from policies.schema import CheckSpec


def build(**options: object) -> Check:
    spec = CheckSpec.model_validate({"check": "toxicity", **options})
    klass = check_class("toxicity")
    assert klass is not None
    return klass(spec.options)


@pytest.mark.parametrize(
    "text",
    [
        "You are a worthless piece of shit and everyone hates you, you fucking idiot.",
        "Shut up, you stupid bitch.",
    ],
)
def test_abuse_fires(text: str) -> None:
    assert build().scan(text).fired


@pytest.mark.parametrize(
    "text",
    [
        "Thank you so much for your help with the garden yesterday!",
        "How often should women get screened for breast cancer?",
        "How do I kill a Python process?",
    ],
)
def test_neutral_text_passes(text: str) -> None:
    assert not build().scan(text).fired, text


def test_lexicon_key_drops_case_and_edge_punctuation() -> None:
    assert lexicon_key("  Hello,  WORLD! ") == "hello world"


def test_lexicon_noisy_or_adds_up() -> None:
    terms = {"alpha": 0.4, "beta gamma": 0.5}
    assert lexicon_score("nothing here", terms) == (0.0, ())
    one, _ = lexicon_score("alpha only", terms)
    assert one == pytest.approx(0.4)
    both, names = lexicon_score("alpha and beta gamma, alpha again", terms)
    assert both == pytest.approx(1 - 0.6 * 0.5)
    assert names == ("lexicon_terms=2",)


def test_shipped_lexicon_loads_with_weights_in_range() -> None:
    terms = load_lexicon()
    assert len(terms) > 1000
    assert all(0.0 < w < 1.0 for w in terms.values())


def test_detail_never_repeats_the_words() -> None:
    result = build().scan("you fucking idiot")
    assert "fucking" not in str(result.detail)
