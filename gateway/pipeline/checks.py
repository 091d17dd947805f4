"""Run a stage's checks on one text and turn their reports into the policy's decision.

The checks only report; here the policy decides: allow lists drop spans or whole
verdicts, ``action`` maps a firing to flag / redact / block, ``monitor`` mode records
what enforce would have done without doing it, and ``on_error`` says what a check that
raised or timed out counts as.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from audit.record import Verdict
from gateway.warmup import WARMUP
from policies.checks.base import CheckResult, RequestContext, Span
from policies.compiled import BoundCheck
from policies.schema import Action, OnError

log = logging.getLogger("warden.checks")

#: whether an answer span's text lies in a value restored from a placeholder (the client's own
#: value from the same request): checks leave such spans alone unless ``check_restored``
Exempt = Callable[[str], bool]

# Checks with a timeout run here so the event loop can stop waiting for them; a check
# that overruns keeps its thread until it returns (Python cannot kill a thread).
#: the longest a check waits for background start-up work before its timeout counts again
STARTUP_GRACE_S = 30.0
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="warden-check")

_ACTION_VERDICT = {
    Action.allow: Verdict.passed,
    Action.flag: Verdict.flag,
    Action.redact: Verdict.redact,
    Action.block: Verdict.block,
    # The value is replaced before the model sees it, as with redact; only the mask differs.
    Action.pseudonymize: Verdict.redact,
}
_ERROR_VERDICT = {OnError.block: Verdict.block, OnError.flag: Verdict.flag, OnError.allow: Verdict.passed}


@dataclass(slots=True)
class CheckOutcome:
    bound: BoundCheck
    verdict: Verdict
    score: float | None
    spans: tuple[Span, ...]
    latency_ms: float
    detail: dict[str, object] = field(default_factory=dict)
    error: str | None = None

    @property
    def applies(self) -> bool:
        """Whether the decision changes anything for the client (enforce mode)."""
        return self.bound.enforced and self.verdict is not Verdict.passed


def decide(
    bound: BoundCheck, text: str, result: CheckResult, latency_ms: float, exempt: Exempt | None = None
) -> CheckOutcome:
    detail: dict[str, object] = dict(result.detail)
    spans = result.spans
    if bound.action is Action.pseudonymize:
        detail["action"] = Action.pseudonymize.value
    if bound.allow and spans:
        kept = tuple(s for s in spans if not bound.allow.allows_span(text, s.start, s.end))
        if len(kept) != len(spans):
            detail["allowed_spans"] = len(spans) - len(kept)
        spans = kept
    if exempt is not None and spans and not bound.spec.check_restored:
        kept = tuple(s for s in spans if not exempt(text[s.start : s.end]))
        if len(kept) != len(spans):
            detail["restored_spans"] = len(spans) - len(kept)
        spans = kept
    fired = result.fired and (bool(spans) or not result.spans)
    if fired and not result.spans and bound.allow and bound.allow.allows_text(text):
        detail["allowed"] = True
        fired = False
    if result.fired:
        detail["fired"] = True
    verdict = _ACTION_VERDICT[bound.action] if fired else Verdict.passed
    # A redaction needs spans; a whole-text check told to redact fails closed as a block.
    if verdict is Verdict.redact and not spans:
        verdict = Verdict.block
        detail["redact_without_spans"] = True
    return CheckOutcome(bound, verdict, result.score, spans if fired else (), latency_ms, detail)


def apply_exceptions(
    outcome: CheckOutcome,
    text: str,
    tenant: str,
    key_id: str,
    role: str | None = None,
    role_of_span: Callable[[Span], str | None] | None = None,
) -> CheckOutcome:
    """``outcome`` with the check's scoped exceptions applied (``exceptions:`` in the policy).

    A firing (or, for a check that marks spans, each span) is let through when an exception's
    scope holds for this request (tenant, key, and the message role the firing came from:
    ``role``, or ``role_of_span``) and its allow list is empty or matches, as the check's own
    ``allow`` does. The detail names the scopes that let something through. Errors are never
    excepted: an exception is about what a check found, not whether it ran."""
    exceptions = outcome.bound.exceptions
    if not exceptions or outcome.verdict in (Verdict.passed, Verdict.error):
        return outcome
    if outcome.spans:
        kept, used = [], []
        for s in outcome.spans:
            r = role_of_span(s) if role_of_span is not None else role
            hit = next(
                (
                    e
                    for e in exceptions
                    if e.matches(tenant, key_id, r) and (not e.allow or e.allow.allows_span(text, s.start, s.end))
                ),
                None,
            )
            if hit is None:
                kept.append(s)
            elif hit.scope not in used:
                used.append(hit.scope)
        if not used:
            return outcome
        outcome.detail["excepted_spans"] = len(outcome.spans) - len(kept)
        outcome.detail["exceptions"] = used
        outcome.spans = tuple(kept)
        if not kept:
            outcome.verdict = Verdict.passed
        return outcome
    hit = next(
        (e for e in exceptions if e.matches(tenant, key_id, role) and (not e.allow or e.allow.allows_text(text))),
        None,
    )
    if hit is not None:
        outcome.detail["exceptions"] = [hit.scope]
        outcome.verdict = Verdict.passed
    return outcome


def _failed(bound: BoundCheck, error: str, latency_ms: float) -> CheckOutcome:
    verdict = _ERROR_VERDICT[bound.on_error]
    return CheckOutcome(
        bound,
        Verdict.error if verdict is Verdict.block else verdict,
        None,
        (),
        latency_ms,
        {"on_error": bound.on_error.value},
        error,
    )


async def run_check(
    bound: BoundCheck,
    text: str,
    messages: Sequence[str] | None = None,
    context: RequestContext | None = None,
    exempt: Exempt | None = None,
) -> CheckOutcome:
    """Run one check on ``text``; with ``messages`` (the input stage), on those texts, whose
    blank-line join is ``text``; with ``context`` (an answer), knowing its request; with
    ``exempt`` (an answer), leaving restored values alone."""
    start = time.perf_counter()
    scan: Any = bound.check.scan if messages is None else bound.check.scan_messages
    arg: Any = text if messages is None else messages
    if context is not None and messages is None:
        scan = functools.partial(bound.check.scan_answer, context=context)
    try:
        if bound.spec.timeout_ms is None:
            result = scan(arg)
        else:
            result = await _bounded(scan, arg, bound.spec.timeout_ms / 1000)
    except TimeoutError:
        return _failed(bound, f"timed out after {bound.spec.timeout_ms} ms", _ms(start))
    except Exception as exc:  # a check must never take the gateway down; on_error decides
        log.warning("check %s raised %s", bound.name, type(exc).__name__, exc_info=True)
        return _failed(bound, f"{type(exc).__name__}: {exc}"[:500], _ms(start))
    return decide(bound, text, result, _ms(start), exempt)


async def _bounded(scan: Any, arg: Any, timeout_s: float) -> Any:
    """``scan(arg)`` in a worker thread, given up after ``timeout_s`` (it cannot be stopped)."""
    future = asyncio.get_running_loop().run_in_executor(_POOL, scan, arg)
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout_s)
    except TimeoutError:
        # Starved by start-up imports rather than slow itself: a fresh budget once they end.
        if not WARMUP.busy() or not await WARMUP.settled(STARTUP_GRACE_S):
            raise
    return await asyncio.wait_for(future, timeout_s)


async def run_checks(
    checks: Sequence[BoundCheck],
    text: str,
    messages: Sequence[str] | None = None,
    context: RequestContext | None = None,
    exempt: Exempt | None = None,
) -> list[CheckOutcome]:
    return [await run_check(bound, text, messages, context, exempt) for bound in checks]


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000
