"""Replay: what an edited policy's input and output checks would decide on stored requests.

Each request's stored input text goes through the ``input`` checks and its stored output text
through the ``output`` checks, with the gateway's own ``run_checks`` (same allow lists, actions,
modes and ``on_error``), once under the running policy and once under the edited one; a
verdict *changes* when the two differ. Comparing two replays of the same stored text, rather
than a replay with the verdict recorded at the time, keeps redaction placeholders in the
stored text from showing as changes. The stage verdict is the strongest *enforced* outcome,
as in the gateway; monitor-mode outcomes are listed as what they would do.

Limits worth knowing: stored text is what ``audit.store_text`` kept, so with ``redacted`` the
values already masked read as ``<ENTITY>`` and cannot fire again; stream and reasoning checks
are not replayed (their input is not stored whole). Exceptions scoped to a tenant or key apply
(each request keeps its tenant and key); exceptions scoped to message roles do not, since the
stored input is the messages joined.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from audit.record import Verdict
from dashboard.data import ReplayInput
from gateway.pipeline.checks import CheckOutcome, apply_exceptions, run_checks
from policies.compiled import CompiledPolicy

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ReplayResult:
    request_id: str
    #: what was recorded when the request ran
    stored_verdict: str
    #: (input, output) stage verdicts under the running and the edited policy
    before: tuple[str, str]
    after: tuple[str, str]
    #: enforced checks that act under the edited policy, as "stage/name: verdict"
    fired: tuple[str, ...]
    #: monitor-mode checks of the edited policy that would act
    monitor: tuple[str, ...]
    #: the start of the stored prompt, and the check that decides (under the edited policy, else
    #: the running one) with its score and threshold
    snippet: str | None = None
    decided_by: str | None = None
    score: float | None = None
    threshold: float | None = None

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def stricter(self) -> bool:
        return max(Verdict(v).rank for v in self.after) > max(Verdict(v).rank for v in self.before)


def stage_verdict(outcomes: Sequence[CheckOutcome]) -> Verdict:
    verdict = Verdict.passed
    for o in outcomes:
        if o.bound.enforced and o.verdict.rank > verdict.rank:
            verdict = o.verdict
    return verdict


async def _run(policy: CompiledPolicy, item: ReplayInput) -> list[tuple[str, CheckOutcome]]:
    out: list[tuple[str, CheckOutcome]] = []
    for stage, checks, text in (("input", policy.input, item.input_text), ("output", policy.output, item.output_text)):
        if checks and text is not None:
            outcomes = await run_checks(checks, text)
            # exceptions scoped by tenant and key apply as they did; by role they cannot (the
            # stored input is the messages joined, their roles are not kept apart)
            out += [(stage, apply_exceptions(o, text, item.tenant, item.key_id)) for o in outcomes]
    return out


def _verdicts(outcomes: list[tuple[str, CheckOutcome]]) -> tuple[str, str]:
    return (
        stage_verdict([o for s, o in outcomes if s == "input"]).value,
        stage_verdict([o for s, o in outcomes if s == "output"]).value,
    )


def _named(outcomes: list[tuple[str, CheckOutcome]], *, enforced: bool) -> tuple[str, ...]:
    return tuple(
        f"{stage}/{o.bound.name}: {o.verdict.value}"
        for stage, o in outcomes
        if o.bound.enforced is enforced and o.verdict is not Verdict.passed
    )


SNIPPET_CHARS = 160


def _decider(outcomes: list[tuple[str, CheckOutcome]]) -> tuple[str, float | None, float | None] | None:
    best: tuple[str, CheckOutcome] | None = None
    for stage, o in outcomes:
        if o.verdict is Verdict.passed or not o.bound.enforced:
            continue
        if best is None or o.verdict.rank > best[1].verdict.rank:
            best = (stage, o)
    if best is None:
        return None
    stage, o = best
    threshold = o.detail.get("threshold", getattr(o.bound.spec.options, "threshold", None))
    return (
        f"{stage}/{o.bound.name}",
        o.score,
        float(threshold) if isinstance(threshold, int | float) and not isinstance(threshold, bool) else None,
    )


async def replay_async(
    edited: CompiledPolicy, running: CompiledPolicy, items: Sequence[ReplayInput], progress: Progress | None = None
) -> list[ReplayResult]:
    results = []
    for n, item in enumerate(items, 1):
        before = await _run(running, item)
        after = await _run(edited, item)
        decided = _decider(after) or _decider(before)
        results.append(
            ReplayResult(
                request_id=item.request_id,
                stored_verdict=item.verdict,
                before=_verdicts(before),
                after=_verdicts(after),
                fired=_named(after, enforced=True),
                monitor=_named(after, enforced=False),
                snippet=item.input_text[:SNIPPET_CHARS] if item.input_text is not None else None,
                decided_by=decided[0] if decided else None,
                score=decided[1] if decided else None,
                threshold=decided[2] if decided else None,
            )
        )
        if progress is not None:
            progress(n, len(items))
    return results


def replay(
    edited: CompiledPolicy, running: CompiledPolicy, items: Sequence[ReplayInput], progress: Progress | None = None
) -> list[ReplayResult]:
    """Synchronous wrapper for Streamlit's script thread, which has no event loop running."""
    return asyncio.run(replay_async(edited, running, items, progress))
