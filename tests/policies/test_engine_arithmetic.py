"""The arithmetic evaluator (policies/engines/arithmetic.py) computes arithmetic and nothing else."""

from __future__ import annotations

import pytest

from policies.engines import arithmetic


@pytest.mark.parametrize(
    "expr",
    ["__import__('os').system('true')", "x + 1", "(1).real", "[1, 2]", "1 if 1 else 2", "abs(-1)", "1 < 2"],
)
def test_evaluator_refuses_anything_but_arithmetic(expr: str) -> None:
    with pytest.raises(arithmetic.Unverifiable):
        arithmetic.evaluate(expr)


@pytest.mark.parametrize("expr", ["9.0 ** 9.0 ** 9.0", "1.0 / 0.0", "(-8.0) ** (1 / 3)", "1e308 * 10.0"])
def test_evaluator_rejects_undefined_and_overflow(expr: str) -> None:
    with pytest.raises(arithmetic.Unverifiable):
        arithmetic.evaluate(expr)


def test_deep_expression_is_unverifiable_not_a_crash() -> None:
    with pytest.raises(arithmetic.Unverifiable):
        arithmetic.evaluate(" + ".join(["1.0"] * 1500))
