"""How a stored audit record reads on the detail page: its timeline, texts and reasoning steps.

This knows how the gateway stores texts (see ``gateway.pipeline``): the input text is masked
by the input checks that redact; a reply's text is first masked by the stream checks (raw
offsets, steps whose ``detail`` names a ``channel``), then by output checks and the stream
checks that only flag or monitor (offsets in what was sent). ``highlight.locate`` verifies
the result against the stored text, so a change in the gateway shows as "not exact", not as
wrong highlights.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from audit.record import AuditRecord, Stage, StepRecord, Verdict
from dashboard.highlight import Layer, Mark

REASONING_STEP_PREFIX = "step "
#: the gateway's steps for ``action: pseudonymize``: the input stage's placeholders, and which
#: the answer got back as values; their spans are labelled with the placeholder
PSEUDONYMIZE_STEP, RESTORE_STEP = "pseudonymize", "restore"


@dataclass(frozen=True, slots=True)
class TimelineRow:
    seq: int
    stage: str
    name: str
    verdict: str
    enforced: bool
    score: float | None
    latency_ms: float
    #: milliseconds from the request's start to when the step was recorded
    at_ms: float | None
    entities: str
    detail: str


def _marks(step: StepRecord) -> list[Mark]:
    return [Mark(s.start, s.end, s.entity_type, step.name, step.verdict.value) for s in step.spans]


def _detail_text(detail: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items() if k not in ("fired",))[:300]


def timeline(record: AuditRecord) -> list[TimelineRow]:
    """One row per step, in step order (``seq``), whatever order they were stored or finished in."""
    rows = []
    for step in sorted(record.steps, key=lambda s: s.seq):
        at_ms = (step.at - record.started_at).total_seconds() * 1000 if step.at else None
        entities = ", ".join(sorted({s.entity_type for s in step.spans}))
        rows.append(
            TimelineRow(
                step.seq,
                step.stage.value,
                step.name,
                step.verdict.value,
                step.enforced,
                step.score,
                step.latency_ms,
                at_ms,
                entities,
                _detail_text(step.detail),
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why a check acted, from its step's detail (keys written by the detectors; any may be absent)."""

    seq: int
    step: str
    verdict: str
    enforced: bool
    score: float | None
    threshold: float | None
    tier: str | None
    #: which message it read: "user #2", "tool #3", ...
    where: str | None
    cues: tuple[str, ...]
    #: top contributing n-grams, highest weight first: (text, weight)
    ngrams: tuple[tuple[str, float], ...]
    semantic_score: float | None
    #: the encoding the decisive text was hidden in ("base64", "pig_latin", ...), if any
    decoded: str | None = None
    #: a phrase the user quoted: its own score and cues (it decides only with the words around it)
    quoted_score: float | None = None
    quoted_cues: tuple[str, ...] = ()


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def evidence(record: AuditRecord) -> list[Evidence]:
    """For each check step that acted, in step order, what decided."""
    out = []
    for step in sorted(acted(record.steps), key=lambda s: s.seq):
        d = step.detail
        raw_ev = d.get("evidence")
        ev: dict[str, Any] = raw_ev if isinstance(raw_ev, dict) else {}
        cues = d.get("cues") or ev.get("cues") or ()
        raw_grams = ev.get("ngrams")
        grams: list[Any] = raw_grams if isinstance(raw_grams, list) else []
        raw_quoted = d.get("quoted")
        quoted: dict[str, Any] = raw_quoted if isinstance(raw_quoted, dict) else {}
        role, message = d.get("role"), d.get("message")
        where = None
        if isinstance(role, str):
            where = f"{role} #{message}" if isinstance(message, int) else role
        out.append(
            Evidence(
                step.seq,
                f"{step.stage.value}/{step.name}",
                step.verdict.value,
                step.enforced,
                step.score,
                _num(d.get("threshold")),
                str(d["tier"]) if isinstance(d.get("tier"), str) else None,
                where,
                tuple(str(c) for c in cues) if isinstance(cues, list | tuple) else (),
                tuple(
                    (str(g.get("text")), _num(g.get("weight")) or 0.0)
                    for g in grams
                    if isinstance(g, dict) and g.get("text")
                ),
                _num(d.get("semantic_score")),
                str(d["decoded"]) if isinstance(d.get("decoded"), str) else None,
                _num(quoted.get("score")),
                tuple(str(c) for c in quoted.get("cues") or () if isinstance(c, str)),
            )
        )
    return out


def missing_text_reason(record: AuditRecord, which: str) -> str:
    """Why the prompt or answer has no stored text, in words that match what happened."""
    if record.input_text is None and record.output_text is None:
        return "Not stored (the policy's `audit.store_text` is `none`)."
    if which == "prompt":
        return "Not stored."
    if record.verdict is Verdict.block and any(
        s.stage is Stage.input and s.verdict is Verdict.block and s.enforced for s in record.steps
    ):
        return "No answer: the request was blocked at the input stage, before the model was called."
    if record.error:
        return f"No answer: the request ended with an error ({record.status.value})."
    return f"No answer was recorded (finish reason {record.finish_reason or '–'})."


def _is_reasoning_container(step: StepRecord) -> bool:
    return step.stage is Stage.reasoning and step.name.startswith(REASONING_STEP_PREFIX) and step.text is not None


def _is_stream_scanner(step: StepRecord) -> bool:
    return step.stage is Stage.stream and "channel" in step.detail


def _placeholder_marks(record: AuditRecord, stage: Stage, name: str) -> list[Mark]:
    return [m for s in record.steps if s.stage is stage and s.name == name for m in _marks(s)]


def input_layers(record: AuditRecord) -> list[Layer]:
    steps = [s for s in record.steps if s.stage is Stage.input and s.name != PSEUDONYMIZE_STEP]
    marks = [m for s in steps for m in _marks(s)]
    # A pseudonymized value is stored as its placeholder, not as <ENTITY>; first, as the gateway masks.
    masked = _placeholder_marks(record, Stage.input, PSEUDONYMIZE_STEP) + [
        m
        for s in steps
        if s.verdict is Verdict.redact and not (s.enforced and s.detail.get("action") == "pseudonymize")
        for m in _marks(s)
    ]
    return [Layer(masked, marks)]


def output_layers(record: AuditRecord) -> list[Layer]:
    scanner = [s for s in record.steps if _is_stream_scanner(s) and s.detail.get("channel") == "content"]
    late = [
        s for s in record.steps if s.stage is Stage.output or (s.stage is Stage.stream and not _is_stream_scanner(s))
    ]
    raw = Layer(
        [m for s in scanner if s.verdict is Verdict.redact for m in _marks(s)],
        [m for s in scanner for m in _marks(s) if s.verdict is Verdict.redact],
    )
    sent = Layer(
        _placeholder_marks(record, Stage.stream, RESTORE_STEP)
        + [m for s in late if s.verdict is Verdict.redact for m in _marks(s)],
        [m for s in late for m in _marks(s)],
    )
    return [raw, sent] if raw.masked else [sent]


def restored_placeholders(record: AuditRecord) -> list[str]:
    """``<EMAIL_ADDRESS_7f3a>`` ×2 (content) for each placeholder the answer got back as its value
    (as Markdown: the placeholder in backticks, so it shows as written)."""
    out = []
    for step in record.steps:
        if step.stage is Stage.stream and step.name == RESTORE_STEP:
            for r in step.detail.get("restored") or []:
                channels = ", ".join(r.get("channels") or [])
                out.append(f"`{r.get('placeholder')}` ×{r.get('count')} ({channels})")
    return out


@dataclass(frozen=True, slots=True)
class ReasoningView:
    number: int
    choice: int
    verdict: str
    text: str
    layers: list[Layer]
    checks: tuple[str, ...]


def reasoning_steps(record: AuditRecord) -> list[ReasoningView]:
    """Each reasoning step with the check outcomes recorded for it (``detail.step``)."""
    views = []
    for step in record.steps:
        if not _is_reasoning_container(step):
            continue
        number = _int(step.name.removeprefix(REASONING_STEP_PREFIX))
        choice = _int(step.detail.get("choice", 0))
        outcomes = [
            s
            for s in record.steps
            if s.stage is Stage.reasoning
            and not _is_reasoning_container(s)
            and _int(s.detail.get("step")) == number
            and _int(s.detail.get("choice", 0)) == choice
        ]
        layer = Layer(
            [m for s in outcomes if s.verdict is Verdict.redact for m in _marks(s)],
            [m for s in outcomes for m in _marks(s)],
        )
        fired = tuple(f"{s.name}: {s.verdict.value}" for s in outcomes if s.verdict is not Verdict.passed)
        views.append(ReasoningView(number, choice, step.verdict.value, step.text or "", [layer], fired))
    return views


def first_wrong_step(record: AuditRecord) -> str | None:
    """Where a step verifier says the reasoning first went wrong, in words, if it did."""
    for step in record.steps:
        if step.verdict is Verdict.passed:
            continue
        d = step.detail
        where = f"reasoning step {d.get('step')}" if step.stage is Stage.reasoning else str(d.get("step", "answer"))
        if d.get("reason") == "arithmetic":
            return f"{where}: {d.get('claim')!s} (expected {d.get('expected')!s})"
        if "final_answer" in d:
            return (
                f"{where}: final answer {d.get('final_answer')!s} contradicts {d.get('last_result_step')!s} "
                f"(= {d.get('last_result')!s})"
            )
    return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def acted(steps: Iterable[StepRecord]) -> list[StepRecord]:
    """Check outcomes that did something (not the upstream call or the final response step)."""
    return [s for s in steps if s.verdict is not Verdict.passed and s.stage not in (Stage.upstream, Stage.response)]
