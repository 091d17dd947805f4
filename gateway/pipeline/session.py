"""One guarded request: its policy, its ordered steps, and the audit record they become.

Both the standalone gateway and the LiteLLM plugin drive a request through the same
``GuardSession``: ``check_input`` before the upstream call, a ``ResponseGuard`` over the
answer (streamed or not), and ``finish`` to hand the record to the audit writer.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from audit.fingerprint import fingerprint
from audit.record import AuditRecord, SpanRecord, Stage, Status, StepRecord, Verdict
from gateway.errors import CheckUnavailable, PolicyBlocked
from gateway.pipeline.checks import CheckOutcome, Exempt, apply_exceptions, run_check, run_checks
from gateway.pipeline.pseudonyms import Pseudonyms
from gateway.pipeline.segments import Segments, View, mask_spans, merge
from policies.checks.base import NO_CONTEXT, RequestContext, Span
from policies.compiled import BoundCheck, CompiledPolicy
from policies.roles import OPERATOR_ROLES
from policies.schema import Action, OnBlock, StoreText

StepListener = Callable[[str, StepRecord], None]


def new_request_id() -> str:
    """Time-ordered (like UUIDv7: 48-bit milliseconds, then 80 random bits), so new audit
    rows land at the end of the primary-key index instead of at random places in it."""
    return f"req_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def span_record(span: Span, value: str) -> SpanRecord:
    """A span as the audit keeps it: where and what kind, and only a keyed fingerprint of ``value``."""
    return SpanRecord(span.entity_type, span.start, span.end, round(span.score, 4), fingerprint(value))


def _in_request(outcome: CheckOutcome, view: View, bound: BoundCheck, tenant: str, key_id: str) -> CheckOutcome:
    """``outcome`` of a check that read ``view``, with the check's scoped exceptions applied
    (by tenant, key and the role each firing came from), spans in whole-request offsets and the
    message (index and role) its verdict came from in the detail."""
    part = outcome.detail.pop("part", None)
    piece = None
    if isinstance(part, int) and 0 <= part < len(view.pieces):
        piece = view.pieces[part]
    if bound.exceptions:

        def role_of_span(span: Span) -> str | None:
            at = view.piece_at(span.start)
            return at.role if at is not None else None

        apply_exceptions(outcome, view.text, tenant, key_id, piece.role if piece else None, role_of_span)
    if piece is None and outcome.spans:
        piece = view.piece_at(outcome.spans[0].start)  # the first span the exceptions left
    if piece is not None:
        outcome.detail["role"] = piece.role
        if piece.message is not None:
            outcome.detail["message"] = piece.message
    if bound.spec.roles is not None:
        outcome.detail["roles"] = sorted(bound.roles)
    outcome.spans = view.to_request(outcome.spans)
    return outcome


@dataclass(slots=True)
class InputDecision:
    """What the input stage decided: the body to send on, or a refusal to answer with."""

    refusal: PolicyBlocked | None = None


@dataclass(slots=True)
class GuardSession:
    policy: CompiledPolicy
    record: AuditRecord
    listener: StepListener | None = None
    #: what the answer-side checks may know of the request (set by the input stage)
    context: RequestContext = NO_CONTEXT
    #: this request's placeholders and their values (``action: pseudonymize``); never stored
    pseudonyms: Pseudonyms | None = None
    started: float = field(default_factory=time.perf_counter)
    _first_token_at: float | None = None

    @staticmethod
    def start(
        policy: CompiledPolicy,
        *,
        request_id: str,
        tenant: str,
        key_id: str,
        endpoint: str,
        model: str,
        stream: bool,
        client_addr: str | None = None,
        listener: StepListener | None = None,
    ) -> GuardSession:
        record = AuditRecord(
            request_id=request_id,
            started_at=datetime.now(UTC),
            tenant=tenant,
            key_id=key_id,
            endpoint=endpoint,
            model_requested=model,
            stream=stream,
            policy_name=policy.name,
            policy_version=policy.version,
            client_addr=client_addr,
        )
        return GuardSession(policy, record, listener)

    # -- steps -------------------------------------------------------------------------

    @property
    def store_text(self) -> StoreText:
        return self.policy.policy.audit.store_text

    def add_step(
        self,
        stage: Stage,
        name: str,
        verdict: Verdict,
        *,
        score: float | None = None,
        spans: Sequence[SpanRecord] = (),
        latency_ms: float = 0.0,
        enforced: bool = True,
        detail: dict[str, Any] | None = None,
        text: str | None = None,
    ) -> StepRecord:
        if self.pseudonyms:
            detail = self.pseudonyms.conceal(detail) if detail else detail
            text = self.pseudonyms.conceal(text) if text else text
        step = StepRecord(
            seq=len(self.record.steps) + 1,
            stage=stage,
            name=name,
            verdict=verdict,
            score=score,
            spans=list(spans),
            latency_ms=round(latency_ms, 3),
            enforced=enforced,
            detail=detail or {},
            text=text,
            at=datetime.now(UTC),
        )
        self.record.steps.append(step)
        if verdict.rank > self.record.verdict.rank and enforced:
            self.record.verdict = verdict
        if self.listener is not None:
            self.listener(self.record.request_id, step)
        return step

    def add_outcome(self, stage: Stage, text: str, outcome: CheckOutcome, **detail: Any) -> None:
        self.add_step(
            stage,
            outcome.bound.name,
            outcome.verdict,
            score=outcome.score,
            spans=self.span_records(text, outcome.spans),
            latency_ms=outcome.latency_ms,
            enforced=outcome.bound.enforced,
            detail={**outcome.detail, **detail, **({"error": outcome.error} if outcome.error else {})},
        )

    def span_records(self, text: str, spans: Iterable[Span]) -> list[SpanRecord]:
        return [span_record(s, text[s.start : s.end]) for s in spans]

    def stored(self, text: str, redact: Iterable[Span]) -> str | None:
        """Text as the policy's ``audit.store_text`` allows it to be kept. A pseudonymized value
        is kept as its placeholder whatever the setting: the record never holds it."""
        if self.store_text is StoreText.none:
            return None
        # First in the list: where a placeholder and a redaction start together, it wins.
        hidden = self.pseudonyms.spans_in(text) if self.pseudonyms else []
        if self.store_text is StoreText.full:
            return mask_spans(text, hidden) if hidden else text
        return mask_spans(text, [*hidden, *redact])

    def excepted(self, outcome: CheckOutcome, text: str) -> CheckOutcome:
        """An answer-side outcome with the check's exceptions for this tenant and key applied."""
        return apply_exceptions(outcome, text, self.record.tenant, self.record.key_id)

    @property
    def exempt(self) -> Exempt | None:
        """For answer-side checks: whether a span lies in a value restored from a placeholder."""
        return self.pseudonyms.covers if self.pseudonyms else None

    # -- stages ------------------------------------------------------------------------

    async def run_stage(
        self, stage: Stage, checks: Sequence[BoundCheck], text: str, messages: Sequence[str] | None = None
    ) -> list[CheckOutcome]:
        context = self.context if messages is None else None
        exempt = self.exempt if messages is None else None
        outcomes = await run_checks(checks, text, messages, context, exempt)
        for outcome in outcomes:
            self.excepted(outcome, text)
            self.add_outcome(stage, text, outcome)
        return outcomes

    def raise_for(self, stage: Stage, outcomes: Sequence[CheckOutcome]) -> None:
        """Turn an enforced block or fail-closed error into the client's error."""
        for o in outcomes:
            if not o.applies:
                continue
            if o.verdict is Verdict.error:
                self.record.status = Status.check_unavailable
                raise CheckUnavailable(f"Check '{o.bound.name}' is unavailable; try again shortly.")
            if o.verdict is Verdict.block:
                self.record.status = Status.blocked
                raise PolicyBlocked(
                    f"Request blocked by policy '{self.policy.name}': {stage.value} check '{o.bound.name}'.",
                    stage=stage.value,
                    check=o.bound.name,
                    policy=self.policy.name,
                )

    async def check_input(self, segments: Segments, *, constrain: list[dict[str, Any]] | None) -> InputDecision:
        """Input stage + safety preamble. Mutates the body behind ``segments`` (redaction)
        and ``constrain`` (the message list to prepend the preamble to)."""
        text = segments.text
        # Taken before redaction: a leak of the system prompt is a leak of what it said.
        self.context = RequestContext(
            tuple(s.text for s in segments.items if s.role in OPERATOR_ROLES and s.text.strip())
        )
        outcomes = []
        for bound in self.policy.input:
            outcome = await self._input_check(bound, segments)
            self.add_outcome(Stage.input, text, outcome)
            outcomes.append(outcome)
        hiding = (Action.redact, Action.pseudonymize)
        placeholders = self._pseudonymize(text, outcomes)
        redactions = [s for o in outcomes if o.spans and o.bound.action in hiding for s in o.spans]
        self.record.input_text = self.stored(text, redactions)
        try:
            self.raise_for(Stage.input, outcomes)
        except PolicyBlocked as exc:
            if self.policy.policy.on_block is OnBlock.refusal:
                return InputDecision(refusal=exc)
            raise
        applied = [
            s
            for o in outcomes
            if o.applies and o.verdict is Verdict.redact and o.bound.action is not Action.pseudonymize
            for s in o.spans
        ]
        if applied or placeholders:
            segments.redact([*placeholders, *applied])
        preamble = self.policy.policy.constrain.system_prompt.strip()
        if preamble and constrain is not None:
            constrain.insert(0, {"role": "system", "content": preamble})
            self.add_step(Stage.input, "constrain", Verdict.passed, detail={"system_prompt_chars": len(preamble)})
        return InputDecision()

    def _pseudonymize(self, text: str, outcomes: Sequence[CheckOutcome]) -> list[Span]:
        """The placeholders for the values enforced ``pseudonymize`` checks found, as spans
        labelled with them (``<EMAIL_ADDRESS_7f3a>``), and the step that records them."""
        found = merge(
            s
            for o in outcomes
            if o.applies and o.verdict is Verdict.redact and o.bound.action is Action.pseudonymize
            for s in o.spans
        )
        if not found:
            return []
        table = Pseudonyms.assign(self.record.tenant, ((s.entity_type, text[s.start : s.end]) for s in found))
        self.pseudonyms = table
        spans = []
        for s in found:
            p = table.of(s.entity_type, text[s.start : s.end])
            if p is not None:
                spans.append(Span(s.start, s.end, p.label, s.score))
        self.add_step(
            Stage.input,
            "pseudonymize",
            Verdict.passed,
            spans=self.span_records(text, spans),
            detail={"placeholders": [p.placeholder for p in table.items]},
        )
        return spans

    async def _input_check(self, bound: BoundCheck, segments: Segments) -> CheckOutcome:
        """Run one input check on the roles it reads; spans and attribution in request terms."""
        view = segments.view(bound.roles)
        if not view.pieces:
            return CheckOutcome(bound, Verdict.passed, None, (), 0.0, {"read": "no text in its roles"})
        outcome = await run_check(bound, view.text, view.texts)
        return _in_request(outcome, view, bound, self.record.tenant, self.record.key_id)

    # -- timing and end ------------------------------------------------------------------

    def first_token(self) -> None:
        if self._first_token_at is None:
            self._first_token_at = time.perf_counter()
            self.record.ttft_ms = round((self._first_token_at - self.started) * 1000, 3)

    def finish(
        self, status: Status | None = None, http_status: int | None = None, error: str | None = None
    ) -> AuditRecord:
        rec = self.record
        if status is not None and rec.status in (Status.ok,):
            rec.status = status
        if http_status is not None:
            rec.http_status = http_status
        if error:
            rec.error = (self.pseudonyms.conceal(error) if self.pseudonyms else error)[:2000]
        rec.finished_at = datetime.now(UTC)
        rec.latency_ms = round((time.perf_counter() - self.started) * 1000, 3)
        # The last step of every timeline: what the client got, however the request ended.
        self.add_step(
            Stage.response,
            "response",
            rec.verdict,
            latency_ms=rec.latency_ms,
            detail={"status": rec.status.value, "http_status": rec.http_status, "finish_reason": rec.finish_reason},
        )
        return rec
