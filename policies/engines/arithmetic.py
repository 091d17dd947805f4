"""Find arithmetic claims in prose and recompute them, safely.

A *claim* is a chain of sides joined by ``=`` (or ``≈``, ``is``, ``equals``...), where at
least one side is an expression: ``200 × 0.8 = 160``, ``20% of $1,200 = $240``,
``3 + 4 + 5 = 12``, ``\\frac{3}{4} = 75%``. Prose is read token by token; a side is a run of
numbers, operators and parentheses, and may carry up to two unit words after a number
(``3 apples + 4 apples = 7 apples``). Anything else ends the run, so ``x = 5`` or a date
never becomes a claim.

Values are computed by walking a Python ``ast`` that only admits numbers, ``+ - * / ** %``,
unary signs and the percent marker ``P(n)``: nothing is ever ``eval``-ed, and all arithmetic
is in floats, so no input can make it slow. A side can have several readings and a claim
holds if any pair agrees: a percent literal is both ``n/100`` and ``n`` (``x/y × 100 = 25%``),
and ``200 - 20%`` is also read the calculator way (``200 × 0.8``). A literal result is
compared at the precision it is written with (``10 / 3 = 3.33`` holds).
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass

_CURRENCY = "$€£¥₹₩₽"
_DIGITS = r"(?:\d{1,3}(?:[,\u00a0\u202f]\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+"
_TOKEN = re.compile(
    rf"""
    (?P<frac>\\[dt]?frac\{{\s*(?P<fn>{_DIGITS})\s*\}}\{{\s*(?P<fd>{_DIGITS})\s*\}})
  | (?P<num>(?:\\?[{_CURRENCY}][ ]?)?(?P<digits>{_DIGITS})
        (?P<pct>[ \u00a0\u202f]?\\?%(?![ \t]*[\d(.]))?(?:[{_CURRENCY}](?!\d))?)
  | (?P<sup>[²³])
  | (?P<op>\*\*|\\times|\\cdot|\\div|[-+*/×✕⋅·∙÷−–^%])
  | (?P<lp>\\left\(|\()
  | (?P<rp>\\right\)|\))
  | (?P<cmp>==|!=|<=|>=|=>|[<>≠≤≥])
  | (?P<eq>≈|≅|~=|\\approx|=)
  | (?P<weq>(?:,[ \t]*)?\b(?:which|that)\s+(?:is|gives|makes|equals|comes\s+to)\b
        |(?:,[ \t]*)?\b(?:giving|making)\b|\b(?:is\s+equal\s+to|equals?|is|gives|yields|makes)\b)
  | (?P<wop>\b(?:times|plus|minus|divided\s+by|multiplied\s+by|of)\b)
  | (?P<word>[^\W\d_]+)
  | (?P<space>[ \t\u00a0\u202f]+)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL | re.IGNORECASE,
)
_OPS = {
    "**": "**", "^": "**", "*": "*", "×": "*", "✕": "*", "⋅": "*", "·": "*", "∙": "*", "\\times": "*",
    "\\cdot": "*", "/": "/", "÷": "/", "\\div": "/", "+": "+", "-": "-", "−": "-", "–": "-", "%": "%",
    "times": "*", "plus": "+", "minus": "-", "divided by": "/", "multiplied by": "*", "x": "*", "of": "*",
}  # fmt: skip
_APPROX = frozenset({"≈", "≅", "~=", "\\approx"})
_MAX_DEPTH = 16
#: a side longer than this is a table or a list of numbers, not a sum someone worked out
_MAX_SIDE_TOKENS = 64
_MAX_UNIT_WORDS = 2
#: one-letter words read as algebra unknowns: "3x + 2 = 11" is an equation to solve, not a claim
_VARIABLES = frozenset("xyznk")


class Unverifiable(ValueError):
    """The expression cannot be evaluated (division by zero, overflow, bad syntax)."""


@dataclass(frozen=True, slots=True)
class Literal:
    value: float
    decimals: int
    percent: bool


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a claim: a Python expression over floats and ``P(n)`` (= n percent)."""

    expr: str
    start: int
    end: int
    has_op: bool
    literal: Literal | None
    units: frozenset[str]
    #: the same side with tight hyphens read as separators: golf scores "68-70-69=207"
    alt_expr: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    start: int
    end: int
    sides: tuple[Side, ...]
    #: one per ``=`` between sides: whether it was an "approximately equal"
    approx: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class Mismatch:
    claim: Claim
    expected: float
    claimed: float


def parse_number(digits: str) -> tuple[float, int]:
    """Value and number of decimals of ``1,234.50``-style digits."""
    plain = re.sub(r"[,\u00a0\u202f]", "", digits)
    _, _, frac = plain.partition(".")
    return float(plain), len(frac)


def evaluate(expr: str, *, calculator_percent: bool = False) -> float:
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise Unverifiable(str(exc)) from None
    try:
        value = _eval(tree.body, calculator_percent)
    except RecursionError:
        raise Unverifiable("too deeply nested") from None
    if not math.isfinite(value):
        raise Unverifiable("not finite")
    return value


def _eval(node: ast.expr, calc: bool) -> float:
    match node:
        case ast.Constant(value=int() | float() as v) if not isinstance(v, bool):
            return float(v)
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_eval(operand, calc)
        case ast.UnaryOp(op=ast.UAdd(), operand=operand):
            return _eval(operand, calc)
        case ast.Call(func=ast.Name(id="P"), args=[arg], keywords=[]):
            return _eval(arg, calc) / 100
        case ast.BinOp(left=left, op=ast.Add() | ast.Sub() as op, right=ast.Call(func=ast.Name(id="P"))) if calc:
            # "$200 - 20%" as a calculator (and a shop sign) means 200 × 0.8
            share = _eval(node.right, calc)
            return _eval(left, calc) * (1 + share if isinstance(op, ast.Add) else 1 - share)
        case ast.BinOp(left=left, op=op, right=right):
            return _apply(op, _eval(left, calc), _eval(right, calc))
    raise Unverifiable(f"not arithmetic: {type(node).__name__}")


def _apply(op: ast.operator, a: float, b: float) -> float:
    try:
        match op:
            case ast.Add():
                return a + b
            case ast.Sub():
                return a - b
            case ast.Mult():
                return a * b
            case ast.Div():
                return a / b
            case ast.Mod():
                return a % b
            case ast.Pow():
                return math.pow(a, b)
    except (ZeroDivisionError, OverflowError, ValueError) as exc:
        raise Unverifiable(str(exc)) from None
    raise Unverifiable(f"operator {type(op).__name__}")


def readings(side: Side) -> list[tuple[float, float]]:
    """The values a side can mean, each with the tolerance its written precision allows."""
    lit = side.literal
    if lit is not None:
        tol = 0.5 * 10.0**-lit.decimals
        return [(lit.value / 100, tol / 100), (lit.value, tol)] if lit.percent else [(lit.value, tol)]
    values = [evaluate(side.expr)]
    if "P(" in side.expr:
        values.append(evaluate(side.expr, calculator_percent=True))
    if side.alt_expr is not None:
        values.append(evaluate(side.alt_expr))
    return [(v, 0.0) for v in values]


def check_claim(claim: Claim, approx_tolerance: float) -> Mismatch | None:
    """The first pair of adjacent sides that disagree under every reading, if any."""
    computed: Side | None = None
    for i, approx in enumerate(claim.approx):
        left, right = claim.sides[i], claim.sides[i + 1]
        computed = left if left.has_op else computed
        if not right.has_op:
            if computed is None:
                continue
            left = computed  # "2 × 3 = 6 = 7": every side equals the last computed one
        if _looks_like_conversion(left, right):
            continue
        try:
            ra, rb = readings(left), readings(right)
        except Unverifiable:
            continue
        if not any(_close(a, b, approx, approx_tolerance) for a in ra for b in rb):
            worked, written = (rb, ra) if left.literal is not None and right.has_op else (ra, rb)
            return Mismatch(claim, expected=worked[0][0], claimed=written[0][0])
    return None


def _looks_like_conversion(left: Side, right: Side) -> bool:
    """``3 ft = 3 × 12 = 36 in`` or ``2 h = 120 min``: the two sides are in different units."""
    if left.units and right.units:
        return not left.units & right.units
    return left.literal is not None and bool(left.units) and right.has_op


def _close(a: tuple[float, float], b: tuple[float, float], approx: bool, rel: float) -> bool:
    (va, ta), (vb, tb) = a, b
    scale = max(1.0, abs(va), abs(vb))
    tol = max(ta, tb) + 1e-9 * scale
    if approx:
        tol = max(tol * 2, rel * max(abs(va), abs(vb)))
    return abs(va - vb) <= tol


@dataclass(slots=True)
class _Tok:
    kind: str  # num | op | lp | rp
    py: str
    start: int
    end: int
    literal: Literal | None = None
    #: a hyphen between digits with no space: minus, or a separator as in "68-70-69"
    joiner: bool = False


class _Parser:
    """Reads one text once; all state is local to one call of ``find_claims``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.matches = [m for m in _TOKEN.finditer(text) if m.lastgroup != "space"]
        self.claims: list[Claim] = []
        self.sides: list[Side] = []
        self.approx: list[bool] = []
        #: an unknown was seen: ignore everything up to the next punctuation or line break
        self.poisoned = False
        self.prev_kind: str | None = None
        self._reset_segment()

    def _reset_segment(self) -> None:
        self.seg: list[_Tok] = []
        self.units: set[str] = set()
        self.depth = 0
        self.expect_operand = True
        self.unit_words = 0

    def run(self) -> list[Claim]:
        for i, m in enumerate(self.matches):
            if self.poisoned:
                self.poisoned = m.lastgroup not in ("other", "cmp")
            else:
                self._feed(m, i)
            self.prev_kind = m.lastgroup
        self._break()
        return self.claims

    def _next_kind(self, i: int) -> str | None:
        return self.matches[i + 1].lastgroup if i + 1 < len(self.matches) else None

    def _next_is_operand(self, i: int) -> bool:
        return self._next_kind(i) in ("num", "frac", "lp")

    def _spaced(self, m: re.Match[str]) -> bool:
        return self.text[m.end() : m.end() + 1].isspace()

    def _poison(self) -> None:
        self._reset_segment()
        self.sides, self.approx = [], []
        self.poisoned = True

    def _last(self) -> _Tok | None:
        return self.seg[-1] if self.seg else None

    def _feed(self, m: re.Match[str], i: int) -> None:
        kind, raw = m.lastgroup, m.group()
        last = self._last()
        if kind in ("num", "frac"):
            if not self.expect_operand and not self.unit_words:
                return self._poison()  # "1 000 000": digits grouped by spaces, not two numbers
            if not self.expect_operand:
                self._break()
            self._push_number(m)
        elif kind == "sup" and not self.expect_operand and last and last.kind in ("num", "rp"):
            if self.unit_words:
                return self._break()
            self.seg.append(_Tok("op", "**", m.start(), m.start()))
            self.seg.append(_Tok("num", "2" if raw == "²" else "3", m.start(), m.end()))
        elif kind == "op":
            self._push_op(_OPS[raw], m)
        elif kind in ("wop", "word"):
            self._feed_word(m, i)
        elif kind == "lp" and self.expect_operand and self.depth < _MAX_DEPTH:
            self.seg.append(_Tok("lp", "(", m.start(), m.end()))
            self.depth += 1
        elif kind == "rp" and not self.expect_operand and self.depth > 0:
            self.seg.append(_Tok("rp", ")", m.start(), m.end()))
            self.depth -= 1
        elif kind in ("eq", "weq"):
            self._feed_equals(kind, raw)
        else:
            self._break()
            if kind == "lp":  # prose "(" may open an expression: "(3 + 4 = 7)"
                self._feed(m, i)
        return None

    def _push_number(self, m: re.Match[str]) -> None:
        if m.lastgroup == "frac":
            num, _ = parse_number(m.group("fn"))
            den, _ = parse_number(m.group("fd"))
            self.seg.append(_Tok("num", f"({num!r} / {den!r})", m.start(), m.end()))
        else:
            value, decimals = parse_number(m.group("digits"))
            percent = m.group("pct") is not None
            py = f"P({value!r})" if percent else repr(value)
            self.seg.append(_Tok("num", py, m.start(), m.end(), Literal(value, decimals, percent)))
        self.expect_operand = False
        self.unit_words = 0

    def _push_op(self, op: str, m: re.Match[str]) -> None:
        last = self._last()
        if not self.expect_operand:
            start, end = m.span()
            tight = m.group() == "-" and self.text[start - 1 : start].isdigit() and self.text[end : end + 1].isdigit()
            self.seg.append(_Tok("op", op, start, end, joiner=tight))
            self.expect_operand = True
        elif op in "+-" and last is None and self.prev_kind in ("word", "wop") and self._spaced(m):
            self._poison()  # "total + 3 × 2": the word is a term of the sum ("for -83" is a number)
        elif op in "+-" and (last is None or last.kind in ("lp", "op")):
            self.seg.append(_Tok("sign", op, m.start(), m.end()))
        else:
            self._break()

    def _feed_word(self, m: re.Match[str], i: int) -> None:
        word = re.sub(r"\s+", " ", m.group().lower())
        last = self._last()
        after_number = not self.expect_operand and last is not None and last.kind == "num"
        if word == "of":
            pct = last is not None and last.literal is not None and last.literal.percent
            if after_number and pct and not self.unit_words and self._next_is_operand(i):
                return self._push_op("*", m)
        elif word in _OPS and not self.expect_operand and self._next_is_operand(i):
            return self._push_op(_OPS[word], m)
        elif word in _VARIABLES:
            if self.seg or self._next_kind(i) not in ("eq", "weq"):
                return self._poison()
        elif word in ("percent", "pct") and after_number and last and last.literal and not self.unit_words:
            lit = last.literal
            if not lit.percent:
                last.literal = Literal(lit.value, lit.decimals, True)
                last.py, last.end = f"P({lit.value!r})", m.end()
            return None
        elif after_number and self.unit_words < _MAX_UNIT_WORDS:
            self.unit_words += 1
            self.units.add(word)
            return None
        return self._break()

    def _feed_equals(self, kind: str, raw: str) -> None:
        if kind == "weq" and not any(t.kind == "op" for t in self.seg):
            return self._break()  # "step 2 is ...": words only join sides when the left is a sum
        side = self._finish_segment()
        if side is None:
            return self._break()
        self.sides.append(side)
        self.approx.append(raw in _APPROX)
        return None

    def _finish_segment(self) -> Side | None:
        toks = self.seg
        while toks and toks[-1].kind in ("op", "sign", "lp"):
            if toks[-1].kind == "lp":
                self.depth -= 1
            toks = toks[:-1]
        while self.depth > 0 and toks and toks[0].kind == "lp":  # prose "(" before the sum
            toks, self.depth = toks[1:], self.depth - 1
        units = frozenset(self.units)
        self._reset_segment()
        if not toks or len(toks) > _MAX_SIDE_TOKENS or self.depth_of(toks) != 0:
            return None
        numbers = [t for t in toks if t.kind == "num"]
        literal = numbers[0].literal if len(toks) == 1 else None
        if len(toks) == 2 and toks[0].kind == "sign" and numbers[0].literal is not None:
            lit = numbers[0].literal
            literal = Literal(-lit.value if toks[0].py == "-" else lit.value, lit.decimals, lit.percent)
        has_op = any(t.kind == "op" or (t.kind == "num" and t.literal is None) for t in toks)
        expr = " ".join(t.py for t in toks)
        alt = " ".join("+" if t.joiner else t.py for t in toks) if any(t.joiner for t in toks) else None
        return Side(expr, toks[0].start, toks[-1].end, has_op, literal, units, alt)

    @staticmethod
    def depth_of(toks: list[_Tok]) -> int:
        depth = 0
        for t in toks:
            depth += (t.kind == "lp") - (t.kind == "rp")
            if depth < 0:
                return -1
        return depth

    def _break(self) -> None:
        side = self._finish_segment()
        if side is not None and self.sides:
            self.sides.append(side)
        if len(self.sides) >= 2 and any(s.has_op for s in self.sides):
            sides = tuple(self.sides)
            approx = tuple(self.approx[: len(sides) - 1])
            self.claims.append(Claim(sides[0].start, sides[-1].end, sides, approx))
        self.sides, self.approx = [], []


def find_claims(text: str) -> list[Claim]:
    """Every arithmetic claim in ``text``, in order, with offsets into ``text``."""
    return _Parser(text).run()
