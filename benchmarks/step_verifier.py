"""How well does the step verifier find wrong arithmetic in worked solutions?

Generates word-problem solutions by script (seeded): each is a few numbered steps and a final
answer, written in varied styles (×, *, x, \\times, "times"; −/-; ÷; $ and €; thousands
separators; "Step 1:", "1.", "**Step 1:**" or plain lines; "Final answer:", "####", \\boxed{}).
Half are left correct; the rest get one corruption:

* ``arith``        one step's result is wrong, and later steps carry the wrong value on
                   (consistently), as a model that slipped once would;
* ``arith_local``  one step's result is wrong, later steps use the right value;
* ``final``        every step is right, the final answer is not the last result;
* ``copy``         a step copies a wrong operand but computes correctly: a reasoning error,
                   not an arithmetic one, which the verifier is not meant to catch.

Prints precision / recall overall, recall and step localisation per corruption, the false
positive rate per writing style, and (with ``--corpora``) how often it fires on real prompts
from ``../shared/corpora`` that are not worked solutions at all.

    python benchmarks/step_verifier.py [--n 2000] [--seed 7] [--corpora ../shared/corpora]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from policies.checks.step_verifier import StepVerifierCheck

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Step:
    text: str  # with {a} {b} ... placeholders for operands and {r} for the result
    operands: list[float]
    op: Callable[[list[float]], float]
    #: which earlier step's result each operand is (None = a given number)
    refs: list[int | None] = field(default_factory=list)
    #: operands that are counts or percentages, written without a currency sign
    plain: tuple[int, ...] = ()


@dataclass
class Style:
    name: str
    times: str
    minus: str
    div: str
    currency: str
    thousands: bool
    eq: str
    step_mark: Callable[[int], str]
    final: Callable[[str], str]


MARKS: dict[str, Callable[[int], str]] = {
    "step": lambda i: f"Step {i}: ",
    "dot": lambda i: f"{i}. ",
    "bold": lambda i: f"**Step {i}:** ",
    "plain": lambda i: "",
}
FINALS: dict[str, Callable[[str], str]] = {
    "final": lambda v: f"Final answer: {v}",
    "hash": lambda v: f"#### {v}",
    "boxed": lambda v: f"The answer is \\boxed{{{v}}}.",
    "bold": lambda v: f"**Answer:** {v}",
}


#: how a step states its result; ". That comes to" is a known miss (a sentence ends the claim)
EQUALS = [" = ", " = ", " = ", " is ", " equals ", " gives ", ", which is ", ". That comes to "]


def random_style(rng: random.Random) -> Style:
    times = rng.choice(["×", "*", "x", "\\times", "times", "·"])
    mark, final = rng.choice(list(MARKS)), rng.choice(list(FINALS))
    eq = rng.choice(EQUALS)
    return Style(
        name=f"{times}|{eq.strip() or '='}",
        eq=eq,
        times=times,
        minus=rng.choice(["-", "−"]),
        div=rng.choice(["/", "÷"]),
        currency=rng.choice(["$", "€", ""]),
        thousands=rng.random() < 0.5,
        step_mark=MARKS[mark],
        final=FINALS[final],
    )


def fmt(value: float, style: Style, money: bool = True) -> str:
    whole = abs(value - round(value)) < 1e-9
    body = f"{round(value):,}" if whole else f"{value:,.2f}"
    if not style.thousands:
        body = body.replace(",", "")
    cur = style.currency if money else ""
    return f"-{cur}{body[1:]}" if body.startswith("-") else f"{cur}{body}"


def problem(rng: random.Random) -> tuple[list[Step], str]:
    """One of a few word-problem shapes; returns its steps and the unit of the answer."""
    kind = rng.randrange(5)
    if kind == 0:
        price, pct, coupon = rng.randrange(40, 2000, 5), rng.choice([10, 15, 20, 25, 30, 40]), rng.randrange(5, 30)
        return [
            Step("The discount is {a}% of {b}{eq}{r}.", [pct, price], lambda o: o[0] / 100 * o[1], [None, None], (0,)),
            Step("The sale price is {a} {minus} {b}{eq}{r}.", [price, 0], lambda o: o[0] - o[1], [None, 0]),
            Step("With the coupon: {a} {minus} {b}{eq}{r}.", [0, coupon], lambda o: o[0] - o[1], [1, None]),
        ], "money"
    if kind == 1:
        eggs, eat, bake, price = rng.randrange(12, 40), rng.randrange(1, 5), rng.randrange(1, 6), rng.randrange(2, 9)
        return [
            Step(
                "She has {a} {minus} {b} {minus} {c}{eq}{r} eggs left.", [eggs, eat, bake], lambda o: o[0] - o[1] - o[2]
            ),
            Step("She sells them for {a} {times} {b}{eq}{r} a day.", [0, price], lambda o: o[0] * o[1], [0, None]),
        ], "money"
    if kind == 2:
        a, qa, b, qb = rng.randrange(2, 90), rng.randrange(2, 12), rng.randrange(2, 90), rng.randrange(2, 12)
        return [
            Step("The shirts cost {a} {times} {b}{eq}{r}.", [a, qa], lambda o: o[0] * o[1]),
            Step("The hats cost {a} {times} {b}{eq}{r}.", [b, qb], lambda o: o[0] * o[1]),
            Step("Together that is {a} + {b}{eq}{r}.", [0, 0], lambda o: o[0] + o[1], [0, 1]),
        ], "money"
    if kind == 3:
        hours, speed, extra = rng.randrange(2, 9), rng.randrange(30, 120), rng.randrange(1, 5)
        dist = hours * speed
        return [
            Step("The speed is {a} km {div} {b} h{eq}{r} km/h.", [dist, hours], lambda o: o[0] / o[1]),
            Step("In {b} more hours it goes {a} {times} {b}{eq}{r} km.", [0, extra], lambda o: o[0] * o[1], [0, None]),
        ], "plain"
    scores: list[float] = [rng.randrange(50, 100) for _ in range(3)]
    return [
        Step("The total is {a} + {b} + {c}{eq}{r} points.", scores, sum),
        Step("The average is {a} {div} 3{eq}{r} points.", [0], lambda o: o[0] / 3, [0]),
    ], "plain"


def wrong(value: float, rng: random.Random) -> float:
    whole = abs(value - round(value)) < 1e-9
    unit = 1.0 if whole else 0.01
    for _ in range(20):
        kind = rng.randrange(4)
        if kind == 0:
            bad = value + rng.choice([-1, 1]) * rng.randrange(1, 10) * unit
        elif kind == 1:
            bad = value * 10
        elif kind == 2:
            bad = value + rng.choice([-1, 1]) * rng.choice([10, 100]) * unit
        else:
            digits = list(str(round(value)))
            if len(digits) < 2:
                continue
            i = rng.randrange(len(digits) - 1)
            digits[i], digits[i + 1] = digits[i + 1], digits[i]
            bad = float("".join(digits)) + (value - round(value))
        if bad > 0 and abs(bad - value) > unit / 2 + 1e-9:
            return round(bad, 2)
    return value + 1


@dataclass
class Sample:
    text: str
    corrupted: str | None  # the corruption kind, None for a clean solution
    step: int | None  # 1-based step that holds the error
    style: str


def render(rng: random.Random, corruption: str | None) -> Sample:
    steps, unit = problem(rng)
    style = random_style(rng)
    money = unit == "money"
    bad_step = rng.randrange(len(steps)) if corruption in ("arith", "arith_local", "copy") else None
    if corruption == "copy":  # the step must take an earlier result to copy it wrongly
        candidates = [i for i, s in enumerate(steps) if any(r is not None for r in s.refs)]
        bad_step = rng.choice(candidates)
    true_results: list[float] = []
    carried: list[float] = []
    lines = []
    for i, step in enumerate(steps):
        refs = step.refs or [None] * len(step.operands)
        true_ops = [true_results[r] if r is not None else v for v, r in zip(step.operands, refs, strict=True)]
        shown_ops = [carried[r] if r is not None else v for v, r in zip(step.operands, refs, strict=True)]
        if corruption == "copy" and i == bad_step:
            j = next(k for k, r in enumerate(refs) if r is not None)
            shown_ops[j] = wrong(shown_ops[j], rng)
        true_results.append(step.op(true_ops))
        shown = step.op(shown_ops)
        written = wrong(shown, rng) if corruption in ("arith", "arith_local") and i == bad_step else shown
        carried.append(written if corruption == "arith" else shown if corruption == "copy" else step.op(true_ops))
        shown_text = [fmt(v, style, money and j not in step.plain) for j, v in enumerate(shown_ops)]
        names = dict(zip("abc", shown_text, strict=False))
        body = step.text.format(
            **names, r=fmt(written, style, money), eq=style.eq, times=style.times, minus=style.minus, div=style.div
        )
        lines.append(style.step_mark(i + 1) + body)
    answer = carried[-1]
    if corruption == "final":
        answer = wrong(answer, rng)
    lines.append(style.final(fmt(answer, style, money)))
    step_no = bad_step + 1 if bad_step is not None else None
    return Sample("\n".join(lines), corruption, step_no, style.name)


def evaluate(n: int, seed: int) -> None:
    rng = random.Random(seed)
    check = StepVerifierCheck(StepVerifierCheck.Options())
    kinds = ["arith", "arith_local", "final", "copy"]
    samples = [render(rng, None if i % 2 == 0 else kinds[(i // 2) % len(kinds)]) for i in range(n)]
    tp = fp = fn = tn = 0
    per_kind: dict[str, Counter[str]] = defaultdict(Counter)
    per_style: dict[str, Counter[str]] = defaultdict(Counter)
    examples: dict[str, str] = {}
    for s in samples:
        result = check.scan(s.text)
        kind = s.corrupted or "clean"
        per_kind[kind]["n"] += 1
        per_kind[kind]["fired"] += result.fired
        if s.step is not None and result.fired and result.detail.get("step") == s.step:
            per_kind[kind]["located"] += 1
        if s.corrupted == "copy":
            continue  # out of scope: counted in its own row only
        for style in s.style.split("|"):
            counts = per_style[style]
            counts["pos" if s.corrupted else "neg"] += 1
            counts["tp" if s.corrupted else "fp"] += result.fired
        if s.corrupted is None:
            fp += result.fired
            tn += not result.fired
            if result.fired:
                examples.setdefault("false positive", s.text)
        else:
            tp += result.fired
            fn += not result.fired
            if not result.fired:
                examples.setdefault(f"missed {s.corrupted}", s.text)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    print(f"step_verifier on {n} generated solutions (seed {seed}); 'copy' errors excluded from P/R\n")
    print(f"{'precision':>10} {'recall':>8} {'F1':>6} {'clean FPR':>10}")
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    print(f"{precision:>10.3f} {recall:>8.3f} {f1:>6.3f} {fp / max(1, fp + tn):>10.3f}\n")
    print(f"{'corruption':<12} {'n':>5} {'fired':>7} {'step located':>13}")
    for kind in ["clean", *kinds]:
        c = per_kind[kind]
        located = f"{c['located'] / c['n']:.3f}" if kind in ("arith", "arith_local", "copy") else "-"
        print(f"{kind:<12} {c['n']:>5} {c['fired'] / max(1, c['n']):>7.3f} {located:>13}")
    print(f"\n{'written as':<16} {'n':>5} {'recall':>7} {'FPR':>6}")
    for style, c in sorted(per_style.items()):
        n = c["pos"] + c["neg"]
        print(f"{style:<16} {n:>5} {c['tp'] / max(1, c['pos']):>7.3f} {c['fp'] / max(1, c['neg']):>6.3f}")
    for label, text in examples.items():
        print(f"\nexample {label}:\n{text}")


def corpora_fire_rate(root: Path) -> None:
    """Fires on real prompts that are not worked solutions: every one is a false positive."""
    print(f"\nfires on real prompts from {root} (all should pass):")
    print(f"{'folder':<28} {'texts':>6} {'with claims':>12} {'fired':>6}")
    check = StepVerifierCheck(StepVerifierCheck.Options())
    for path in sorted(root.glob("*/*.jsonl")):
        texts = [json.loads(line).get("text", "") for line in path.read_text(encoding="utf-8").split("\n") if line]
        with_claims = fired = 0
        for text in texts:
            result = check.scan(text)
            with_claims += result.detail.get("claims_checked", 0) > 0
            if result.fired:
                fired += 1
                if fired == 1 and "claim" in result.detail:
                    print(f"    e.g. {str(result.detail['claim'])[:70]!r}")
        print(f"{path.parent.name:<28} {len(texts):>6} {with_claims:>12} {fired:>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--corpora", type=Path, default=REPO.parent / "shared" / "corpora")
    args = parser.parse_args()
    evaluate(args.n, args.seed)
    if args.corpora.is_dir():
        corpora_fire_rate(args.corpora)


if __name__ == "__main__":
    main()
