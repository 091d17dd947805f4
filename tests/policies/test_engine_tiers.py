"""How tiers combine (policies/engines/tiers.py): the stacker, its bounds, the shipped weights."""

from __future__ import annotations

import math

import pytest

from policies.engines.tiers import Stacker, load_stackers, logit_of, sigmoid


@pytest.mark.parametrize("p", [0.01, 0.25, 0.5, 0.9, 0.999])
def test_logit_of_inverts_sigmoid(p: float) -> None:
    assert math.isclose(sigmoid(logit_of(p)), p, rel_tol=1e-9)


def test_logit_of_stays_finite_at_the_ends() -> None:
    assert math.isfinite(logit_of(0.0)) and math.isfinite(logit_of(1.0))


def test_bounds_span_the_encoders_usual_range_either_way_round() -> None:
    up = Stacker("attack", bias=-1.0, ngram=1.0, cues=2.0, semantic=0.5, semantic_range=(-4.0, 4.0))
    assert up.bounds(1.0, 0.0) == (up.logit(1.0, 0.0, -4.0), up.logit(1.0, 0.0, 4.0))
    down = Stacker("attack", bias=-1.0, ngram=1.0, cues=2.0, semantic=-0.5, semantic_range=(-4.0, 4.0))
    lo, hi = down.bounds(1.0, 0.0)
    assert lo <= hi


def test_shipped_stackers_name_an_encoder_head() -> None:
    stackers = load_stackers()
    assert stackers
    for stacker in stackers.values():
        assert stacker.head in {"attack", "indirect"}
        assert stacker.semantic_range[0] < stacker.semantic_range[1]
