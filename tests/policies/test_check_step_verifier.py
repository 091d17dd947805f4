from __future__ import annotations

import pytest
from pydantic import ValidationError

from policies.checks.step_verifier import StepVerifierCheck, split_steps


def check(**options: object) -> StepVerifierCheck:
    return StepVerifierCheck(StepVerifierCheck.Options.model_validate(options))


CORRECT = [
    "200 × 0.8 = 160",
    "200 * (1 - 0.2) = 160",
    "20% of 200 = 40",
    "3 + 4 + 5 = 12",
    "1,200 − 300 = 900",
    "$1,200.50 - $200 = $1,000.50",
    "€200 ÷ 4 = €50",
    "200€ / 4 = 50€",
    "200 - 20% = 160",  # calculator reading of a discount
    "(30 / 120) × 100 = 25%",
    "3/4 = 75%",
    "10 / 3 = 3.33",
    "10 / 3 ≈ 3.3",
    "17 % 5 = 2",
    "5² = 25",
    "(3 + 4)² = 49",
    "2^10 = 1024",
    r"$200 \times 0.8 = 160$",
    r"\frac{3}{4} = 0.75",
    "3 x 4 = 12",
    "3 times 4 equals 12",
    "So 200 × 0.8 is 160.",
    "(3 + 4 = 7)",
    "5 - 8 = -3",
    "25 percent of 80 = 20",
    "$5 per hour × 8 hours = $40",
    "3 apples + 4 apples = 7 apples",
    "0.1 + 0.2 = 0.3",
    "1,234,567 × 3 = 3,703,701",
    "160 = 200 × 0.8",
    "a = 2 * 3 = 6 = 6.0",
    "3 ft = 3 × 12 = 36 in",
]

WRONG = [
    ("200 × 0.8 = 150", 160, 150),
    ("200 * (1 - 0.2) = 170", 160, 170),
    ("20% of 200 = 50", 40, 50),
    ("3 + 4 + 5 = 13", 12, 13),
    ("1,200 − 300 = 800", 900, 800),
    ("$1,200.50 - $200 = $1,001.50", 1000.5, 1001.5),
    ("€200 ÷ 4 = €40", 50, 40),
    ("10 / 3 = 3.4", 3.333333333, 3.4),
    ("5² = 24", 25, 24),
    ("(3 + 4)² = 48", 49, 48),
    (r"$200 \times 0.8 = 180$", 160, 180),
    ("3 times 4 equals 13", 12, 13),
    ("5 - 8 = 3", -3, 3),
    ("a = 2 * 3 = 6 = 7", 6, 7),
    ("150 = 200 × 0.8", 160, 150),
    ("2**10 = 1000", 1024, 1000),
]

NOT_CLAIMS = [
    "2x + 3 = 7",  # an equation to solve, not a claim
    "total + 3 × 2 = 10",
    "The date 2024-01-15 = today",
    "2 km = 2000 m",
    "1 000 000 / 1000 = 1000",
    "if x % 2 == 0: print(x)",
    "Call me at 555-1234, the meeting is at 10:30.",
    "10 / 0 = 0",  # undefined, skipped rather than judged
]


@pytest.mark.parametrize("text", CORRECT)
def test_correct_claims_pass(text: str) -> None:
    result = check().scan(text)
    assert not result.fired, result.detail
    assert result.detail["claims_checked"] >= 1


@pytest.mark.parametrize(("text", "expected", "claimed"), WRONG)
def test_wrong_claims_fire_with_values(text: str, expected: float, claimed: float) -> None:
    result = check().scan(text)
    assert result.fired
    assert result.score == 1.0
    assert result.detail["reason"] == "arithmetic"
    assert result.detail["expected"] == pytest.approx(expected)
    assert result.detail["claimed"] == pytest.approx(claimed)
    (span,) = result.spans
    assert span.entity_type == "ARITHMETIC_ERROR"
    assert result.detail["claim"] == text[span.start : span.end]


@pytest.mark.parametrize("text", NOT_CLAIMS)
def test_text_that_is_not_a_checkable_claim_passes(text: str) -> None:
    assert not check().scan(text).fired


SOLUTION = """Step 1: The discount is 20% of $200 = $40.
Step 2: The sale price is $200 - $40 = {s2}.
Step 3: With the $15 coupon: {s2} - $15 = {s3}.
Final answer: {answer}"""


def test_first_wrong_step_is_named_not_the_ones_it_carries_into() -> None:
    text = SOLUTION.format(s2="$150", s3="$135", answer="$135")
    result = check().scan(text)
    assert result.fired
    assert result.detail["step"] == 2
    assert result.detail["claim"] == "$200 - $40 = $150"
    assert result.detail["errors"] == 1  # step 3 is right given step 2
    assert "final_answer" not in result.detail


def test_consistent_solution_passes() -> None:
    result = check().scan(SOLUTION.format(s2="$160", s3="$145", answer="$145"))
    assert not result.fired
    assert result.detail["claims_checked"] == 3


def test_final_answer_that_contradicts_last_step_fires() -> None:
    text = SOLUTION.format(s2="$160", s3="$145", answer="$150")
    result = check().scan(text)
    assert result.fired
    assert result.detail["reason"] == "final_answer"
    assert result.detail["final_answer"] == "$150"
    assert result.detail["last_result"] == 145
    assert result.detail["last_result_step"] == 3
    (span,) = result.spans
    assert text[span.start : span.end] == "$150"
    assert span.entity_type == "FINAL_ANSWER_MISMATCH"


def test_final_answer_check_can_be_turned_off() -> None:
    text = SOLUTION.format(s2="$160", s3="$145", answer="$150")
    assert not check(check_final_answer=False).scan(text).fired


@pytest.mark.parametrize(
    ("answer_line", "fires"),
    [
        ("#### 18", False),
        ("#### 19", True),
        ("The answer is \\boxed{18}.", False),
        ("The answer is \\boxed{81}.", True),
        ("**Final Answer:** she makes $18 a day", False),
        ("Answer = 18.0", False),
        ("Let me check my answer in 2 ways.", False),  # no "answer is/:" -> not a final answer
    ],
)
def test_final_answer_formats(answer_line: str, fires: bool) -> None:
    text = f"She sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = $18 every day.\n{answer_line}"
    assert check().scan(text).fired is fires


def test_verification_line_is_not_the_last_step() -> None:
    text = "1. 200 × 0.8 = 160\n2. 160 − 15 = 145\nCheck: 145 + 15 = 160 ✓\nThe answer is 145."
    assert not check().scan(text).fired


def test_answer_that_is_itself_a_claim_is_checked_as_a_claim() -> None:
    result = check().scan("200 × 0.8 = 160\nFinal answer: 160 - 15 = 140")
    assert result.fired
    assert result.detail["reason"] == "arithmetic"
    assert result.detail["claimed"] == 140


def test_percent_answer_matches_fraction_result() -> None:
    assert not check().scan("30 / 120 = 0.25\nFinal answer: 25%").fired


def test_steps_without_numbers_are_named_by_line() -> None:
    result = check().scan("First we add.\n3 + 4 = 7\nThen 7 × 2 = 15")
    assert result.detail["step"] == 3


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("Intro\nStep 1: a\nStep 2: b", [0, 1, 2]),
        ("1. a\n2) b\n**Step 3:** c", [1, 2, 3]),
        ("line one\nline two", [1, 2]),
        ("1.5 kg of flour\n2.5 kg", [1, 2]),  # decimals at a line start are not step numbers
    ],
)
def test_split_steps(text: str, labels: list[int]) -> None:
    assert [s.label for s in split_steps(text)] == labels


def test_approx_tolerance_option() -> None:
    assert not check().scan("100 / 3 ≈ 33.6").fired  # within 1%
    assert check(approx_tolerance=0.001).scan("100 / 3 ≈ 33.6").fired


def test_options_are_strict() -> None:
    with pytest.raises(ValidationError):
        StepVerifierCheck.Options.model_validate({"tolerance": 1})
    with pytest.raises(ValidationError):
        StepVerifierCheck.Options.model_validate({"approx_tolerance": 2})


@pytest.mark.parametrize("text", ["1+" * 5000 + "1 = 5", "(" * 3000 + "1" + ")" * 3000 + " = 2", "2^" * 3000 + "2 = 5"])
def test_pathological_input_is_skipped_not_crashed(text: str) -> None:
    assert not check().scan(text).fired


def test_injection_in_prose_is_never_executed() -> None:
    # The tokenizer only ever builds expressions from digits, operators and P(); names never
    # reach the evaluator, and a claim around them is simply not read.
    result = check().scan("__import__('os').system('rm -rf /') = 0 and 2 + 2 = 5")
    assert result.fired
    assert result.detail["claim"] == "2 + 2 = 5"


def test_spans_index_the_scanned_text() -> None:
    text = "Some preamble.\n\n2. The total is 3 × 7 = 20 dollars."
    result = check().scan(text)
    (span,) = result.spans
    assert text[span.start : span.end] == "3 × 7 = 20"
    assert result.detail["step"] == 2
