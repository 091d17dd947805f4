"""Step verifier: recompute the arithmetic in a piece of reasoning, black-box.

Catches: arithmetic claims that do not hold (``200 × 0.8 = 150``, ``20% of 200 = 50``,
``3 + 4 + 5 = 13``), written with ``× · ÷ − ^ ²``, LaTeX (``\\times``, ``\\frac{a}{b}``), words
(``times``, ``equals``, ``is``), thousands separators and currency symbols; and a final answer
(``Final answer: 150``, ``#### 150``, ``\\boxed{150}``) that contradicts the result of the last
calculation before it. It names the *first* wrong step: the number written in the text
(``Step 3``, ``3.``) or, for text without numbered steps, the line. Each claim is checked on
its own, so an error carried forward correctly from an earlier step is not counted again.

Misses: errors in reasoning that are not arithmetic (a wrong formula, a misread question,
a wrong unit), claims with unknowns (``3x + 2 = 11`` is skipped, not solved), numbers written
as words, ``1.000,50``-style decimal commas, and digits grouped by plain spaces. Rounded results
are accepted at the precision written (``10 / 3 = 3`` holds); division by zero is skipped.
See ``policies.engines.arithmetic`` for how claims are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from policies.checks.base import Check, CheckOptions, CheckResult, Span
from policies.engines import arithmetic
from policies.engines.arithmetic import Claim, Mismatch, Unverifiable

_STEP_MARK = re.compile(
    r"^[ \t]*(?:[*#>_-]+[ \t]*)?(?:step[ \t]*(?P<step>\d+)\b|(?P<item>\d+)[.)](?=[ \t]))",
    re.IGNORECASE | re.MULTILINE,
)
_NUMBER = r"-?(?:\\?[$€£¥₹][ ]?)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[ ]?\\?%)?"
_FINAL = re.compile(
    r"(?:####[ \t]*|\\boxed\{[ \t]*"
    r"|\b(?:final[ \t]+answer|answer)\b[ \t*]*(?::|=|\bis\b|\bwas\b)[^\n\d]{0,30}?)"
    rf"(?P<num>{_NUMBER})",
    re.IGNORECASE,
)
_DIGITS = re.compile(r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")
_UNREAD_RESULT = re.compile(r"[=≈]")
_CHECK_WORDS = re.compile(r"\b(?:check|verif|sanity)\w*|[✓✔]", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Step:
    label: int
    start: int
    end: int


class StepVerifierOptions(CheckOptions):
    #: also flag a final answer that differs from the last computed result
    check_final_answer: bool = True
    #: relative tolerance for claims written with "≈"
    approx_tolerance: float = Field(default=0.01, ge=0.0, le=0.5)


class StepVerifierCheck(Check[StepVerifierOptions]):
    name = "step_verifier"
    default_entity = "ARITHMETIC_ERROR"

    def scan(self, text: str) -> CheckResult:
        claims = arithmetic.find_claims(text)
        mismatches = [m for m in (arithmetic.check_claim(c, self.options.approx_tolerance) for c in claims) if m]
        steps = split_steps(text)
        detail: dict[str, Any] = {"claims_checked": len(claims), "errors": len(mismatches)}
        spans: list[Span] = []
        if mismatches:
            first = mismatches[0]
            detail |= _mismatch_detail(text, first, steps)
            spans.append(Span(first.claim.start, first.claim.end, "ARITHMETIC_ERROR"))
        if self.options.check_final_answer:
            final = _final_answer_conflict(text, claims, steps)
            if final is not None:
                detail |= final[0]
                spans.append(final[1])
        if not spans:
            return CheckResult(fired=False, detail=detail)
        detail.setdefault("reason", "final_answer")
        return CheckResult(fired=True, score=1.0, spans=tuple(spans), detail=detail)


def split_steps(text: str) -> list[_Step]:
    """Numbered steps (``Step 2:``, ``2.``, ``2)`` at a line start), else one step per line."""
    marks = list(_STEP_MARK.finditer(text))
    if marks:
        steps = [_Step(0, 0, marks[0].start())] if marks[0].start() > 0 else []
        for mark, nxt in zip(marks, [*marks[1:], None], strict=True):
            label = int(mark.group("step") or mark.group("item"))
            steps.append(_Step(label, mark.start(), nxt.start() if nxt else len(text)))
        return steps
    steps, pos = [], 0
    for number, line in enumerate(text.split("\n"), start=1):
        steps.append(_Step(number, pos, pos + len(line)))
        pos += len(line) + 1
    return steps


def _step_at(steps: list[_Step], offset: int) -> _Step:
    for step in steps:
        if step.start <= offset <= step.end:
            return step
    return steps[-1]


def _mismatch_detail(text: str, m: Mismatch, steps: list[_Step]) -> dict[str, Any]:
    return {
        "reason": "arithmetic",
        "step": _step_at(steps, m.claim.start).label,
        "claim": text[m.claim.start : m.claim.end],
        "expected": _plain(m.expected),
        "claimed": _plain(m.claimed),
    }


def _final_answer_conflict(text: str, claims: list[Claim], steps: list[_Step]) -> tuple[dict[str, Any], Span] | None:
    answer = None
    for answer in _FINAL.finditer(text):  # noqa: B007 - the last one is the final answer
        pass
    if answer is None:
        return None
    start, end = answer.span("num")
    if any(c.start <= start < c.end for c in claims):
        return None  # "Answer: 160 - 15 = 145" is a claim and is checked as one
    before = [c for c in claims if c.end <= start and not _is_check_line(text, c)]
    if not before:
        return None
    last = before[-1]
    if _UNREAD_RESULT.search(text, last.end, answer.start()):
        return None  # a later calculation we could not read may be what the answer restates
    try:
        results = arithmetic.readings(last.sides[-1])
    except Unverifiable:
        return None
    given = arithmetic.readings(_answer_side(answer.group("num"), start, end))
    if any(abs(g - r) <= max(gt, rt) + 1e-9 * max(1.0, abs(g), abs(r)) for g, gt in given for r, rt in results):
        return None
    detail = {
        "final_answer": answer.group("num").strip(),
        "last_result": _plain(results[0][0]),
        "last_result_step": _step_at(steps, last.start).label,
    }
    return detail, Span(start, end, "FINAL_ANSWER_MISMATCH")


def _is_check_line(text: str, claim: Claim) -> bool:
    """A verification like "Check: 145 + 15 = 160 ✓" restates, it does not produce the answer."""
    line_start = text.rfind("\n", 0, claim.start) + 1
    line_end = text.find("\n", claim.end)
    return _CHECK_WORDS.search(text, line_start, line_end if line_end >= 0 else len(text)) is not None


def _answer_side(raw: str, start: int, end: int) -> arithmetic.Side:
    digits = _DIGITS.search(raw)
    assert digits is not None  # _FINAL only matches around digits
    value, decimals = arithmetic.parse_number(digits.group())
    value = -value if raw.lstrip().startswith("-") else value
    literal = arithmetic.Literal(value, decimals, percent="%" in raw)
    return arithmetic.Side(raw, start, end, has_op=False, literal=literal, units=frozenset())


def _plain(value: float) -> int | float:
    """JSON-friendly: whole numbers as ints, others to 10 significant digits."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else float(f"{value:.10g}")
