"""The answer side of the pipeline, written once for streamed and non-streamed replies.

A ``ResponseGuard`` takes OpenAI-shaped chunks (``chat.completion.chunk`` or legacy
``text_completion``) one at a time and returns the chunks to send. A non-streamed reply
goes through the very same channels as one final chunk per choice, so stream checks,
reasoning checks and output checks behave identically whichever way the client asked.

Per choice: a content channel, a reasoning channel and one channel per tool call, each a
``ChannelScanner``; reasoning (deltas or ``<think>`` blocks) is also cut into steps for the
policy's ``reasoning`` checks. Finish chunks are held until the upstream is done, so the
output checks can still turn the ending into ``content_filter``.

When the input stage pseudonymized values, each channel first restores this request's
placeholders (``gateway.pipeline.pseudonyms``); every check on the answer then reads what the
client gets, and what the audit stores has the placeholders put back.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from audit.record import Stage, Status, Verdict
from gateway.pipeline.checks import CheckOutcome, run_checks
from gateway.pipeline.pseudonyms import Restorer
from gateway.pipeline.reasoning import StepSplitter, ThinkRouter
from gateway.pipeline.segments import mask_spans
from gateway.pipeline.session import GuardSession, span_record
from gateway.pipeline.stream import ChannelScanner, Release, StreamHit
from policies.checks.base import Span
from policies.compiled import BoundCheck
from policies.schema import Action

Kind = Literal["chat", "completion"]
REASONING_KEYS = ("reasoning_content", "reasoning")


@dataclass(slots=True)
class Choice:
    index: int
    content: ChannelScanner
    reasoning: ChannelScanner
    tools: dict[int, ChannelScanner] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    steps: StepSplitter = field(default_factory=StepSplitter)
    think: ThinkRouter = field(default_factory=ThinkRouter)
    step_count: int = 0
    finish_chunk: dict[str, Any] | None = None
    finish_reason: str | None = None


@dataclass(slots=True)
class ResponseGuard:
    session: GuardSession
    kind: Kind = "chat"
    choices: dict[int, Choice] = field(default_factory=dict)
    template: dict[str, Any] | None = None
    stopped: bool = False
    usage: dict[str, Any] | None = None
    redactions: dict[int, list[Span]] = field(default_factory=dict)
    #: the request's ``response_format``, for ``json_schema`` checks that follow it
    response_format: dict[str, Any] | None = None
    _restore_recorded: bool = False
    _hits_recorded: bool = False

    # -- streaming -----------------------------------------------------------------------

    async def process_chunk(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """One upstream chunk in, zero or more chunks out."""
        if self.stopped:
            return []
        if self.template is None:
            self.template = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
            self.session.record.model_served = chunk.get("model")
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        out_choices = []
        for raw in chunk.get("choices") or []:
            choice = self._choice(int(raw.get("index", 0)))
            emitted = await self._process_choice(choice, raw)
            if self.stopped:
                return [self._stop_chunk(choice, emitted)]
            if emitted is not None:
                out_choices.append(emitted)
        if not out_choices and not chunk.get("usage"):
            return []
        out = dict(chunk)
        out["choices"] = out_choices
        if chunk.get("usage") and not out_choices:
            return [out]  # the usage chunk is sent after the held finish chunks, in finish()
        out.pop("usage", None)
        return [out]

    async def finish(self) -> list[dict[str, Any]]:
        """The upstream is done: flush every channel, run output checks, release endings."""
        if self.stopped:
            return []
        out: list[dict[str, Any]] = []
        for choice in self.choices.values():
            tail = await self._flush(choice)
            if tail is not None:
                out.append(self._wrap([tail]))
            if self.stopped:
                out.append(self._stop_chunk(choice, None))
                return out
        blocked = await self._output_stage()
        for choice in self.choices.values():
            ending = choice.finish_chunk or self._delta_choice(choice.index, {})
            ending = dict(ending)
            if blocked:
                ending["finish_reason"] = "content_filter"
            ending.setdefault("finish_reason", choice.finish_reason or "stop")
            out.append(self._wrap([ending]))
        if self.usage:
            out.append(self._wrap([], usage=self.usage))
        self._usage_to_record()
        return out

    # -- non-streamed --------------------------------------------------------------------

    async def process_response(self, response: dict[str, Any]) -> dict[str, Any]:
        """A whole reply: run it through the same channels and checks, then rebuild it."""
        self.template = {k: v for k, v in response.items() if k not in ("choices", "usage")}
        self.session.record.model_served = response.get("model")
        self.usage = response.get("usage")
        result = copy.deepcopy(response)
        for raw in result.get("choices") or []:
            choice = self._choice(int(raw.get("index", 0)))
            holder = (raw.get("message") or {}) if self.kind == "chat" else raw
            key = "content" if self.kind == "chat" else "text"
            if isinstance(holder.get(key), str):
                holder[key] = await self._content(choice, holder[key], final=True)
            for rkey in REASONING_KEYS:
                if isinstance(holder.get(rkey), str):
                    holder[rkey] = await self._reasoning(choice, holder[rkey], final=True)
            for pos, call in enumerate(holder.get("tool_calls") or []):
                fn = call.get("function") or {}
                if isinstance(fn.get("arguments"), str):
                    fn["arguments"] = self._tool(choice, pos, fn["arguments"], final=True)
            await self._reasoning_tail(choice)
            if self.stopped:
                break
            choice.finish_reason = raw.get("finish_reason")
        blocked = self.stopped or await self._output_stage()
        refusal = self.session.policy.policy.refusal_text
        for raw in result.get("choices") or []:
            choice = self.choices[int(raw.get("index", 0))]
            holder = (raw.get("message") or {}) if self.kind == "chat" else raw
            key = "content" if self.kind == "chat" else "text"
            if blocked:
                holder[key] = refusal
                for dropped in ("tool_calls", *REASONING_KEYS):
                    holder.pop(dropped, None)
                raw["finish_reason"] = "content_filter"
            elif choice.sent and self._output_redactions(choice.index):
                holder[key] = mask_spans("".join(choice.sent), self._output_redactions(choice.index))
        self._usage_to_record()
        return result

    # -- channels ------------------------------------------------------------------------

    def _choice(self, index: int) -> Choice:
        choice = self.choices.get(index)
        if choice is None:
            choice = Choice(index, self._scanner("content"), self._scanner("reasoning"))
            self.choices[index] = choice
        return choice

    def _scanner(self, channel: str) -> ChannelScanner:
        policy = self.session.policy
        table = self.session.pseudonyms
        restorer = Restorer(table, channel, json=channel == "tool_call") if table else None
        record = self.session.record
        return ChannelScanner(
            policy.stream,
            policy.holdback_chars,
            self.session.context,
            restorer=restorer,
            exempt=self.session.exempt,
            tenant=record.tenant,
            key_id=record.key_id,
        )

    async def _process_choice(self, choice: Choice, raw: dict[str, Any]) -> dict[str, Any] | None:
        out = dict(raw)
        if self.kind == "chat":
            delta = dict(raw.get("delta") or {})
            out["delta"] = delta
            if isinstance(delta.get("content"), str):
                delta["content"] = await self._content(choice, delta["content"], final=False)
                if not delta["content"]:
                    del delta["content"]
            for rkey in REASONING_KEYS:
                if isinstance(delta.get(rkey), str):
                    delta[rkey] = await self._reasoning(choice, delta[rkey], final=False)
                    if not delta[rkey]:
                        del delta[rkey]
            if delta.get("tool_calls"):
                delta["tool_calls"] = [self._tool_delta(choice, call) for call in delta["tool_calls"]]
        elif isinstance(raw.get("text"), str):
            out["text"] = await self._content(choice, raw["text"], final=False)
        if self.stopped:
            return out
        if raw.get("finish_reason"):
            choice.finish_reason = raw["finish_reason"]
            choice.finish_chunk = {**out, "delta": {}} if self.kind == "chat" else {**out, "text": ""}
            tail = await self._flush(choice)
            return self._merge(out, tail) if tail else self._strip_finish(out)
        if self._empty(out):
            return None
        return out

    # Reasoning steps are cut from the text *as released*, so a value a stream check
    # redacted is never stored or checked in the clear, in steps as anywhere else.
    async def _content(self, choice: Choice, text: str, final: bool) -> str:
        released = self._released(choice, choice.content.feed(text, final), "content")
        inner = choice.think.feed(released) if released else ""
        if inner:
            await self._reasoning_steps(choice, choice.steps.feed(inner))
        return released

    async def _reasoning(self, choice: Choice, text: str, final: bool) -> str:
        released = self._released(choice, choice.reasoning.feed(text, final), "reasoning")
        if released:
            await self._reasoning_steps(choice, choice.steps.feed(released))
        return released

    def _tool(self, choice: Choice, index: int, text: str, final: bool) -> str:
        scanner = choice.tools.get(index)
        if scanner is None:
            scanner = choice.tools[index] = self._scanner("tool_call")
        return self._released(choice, scanner.feed(text, final), "tool_call")

    def _tool_delta(self, choice: Choice, call: dict[str, Any]) -> dict[str, Any]:
        call = copy.deepcopy(call)
        fn = call.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            fn["arguments"] = self._tool(choice, int(call.get("index", 0)), fn["arguments"], final=False)
        return call

    def _released(self, choice: Choice, release: Release, channel: str) -> str:
        if release.text:
            self.session.first_token()
            if channel == "content":
                choice.sent.append(release.text)
        if release.blocked_by is not None:
            self._block(release.blocked_by, channel)
        return release.text

    async def _flush(self, choice: Choice) -> dict[str, Any] | None:
        """End of a choice: the held tails go out (checked once more), last steps run."""
        delta: dict[str, Any] = {}
        key = "content" if self.kind == "chat" else "text"
        text = await self._content(choice, "", final=True)
        if text:
            delta[key] = text
        if not self.stopped:
            rtext = await self._reasoning(choice, "", final=True)
            if rtext:
                delta["reasoning_content"] = rtext
        for index, scanner in list(choice.tools.items()):
            if self.stopped:
                break
            args = self._released(choice, scanner.feed("", final=True), "tool_call")
            if args:
                delta.setdefault("tool_calls", []).append({"index": index, "function": {"arguments": args}})
        await self._reasoning_tail(choice)
        if not delta:
            return None
        if self.kind == "chat":
            return self._delta_choice(choice.index, delta)
        return {"index": choice.index, "text": delta.get("text", ""), "logprobs": None, "finish_reason": None}

    async def _reasoning_tail(self, choice: Choice) -> None:
        await self._reasoning_steps(choice, choice.steps.finish())

    async def _reasoning_steps(self, choice: Choice, steps: list[str]) -> None:
        checks = self.session.policy.reasoning
        for text in steps:
            choice.step_count += 1
            outcomes: list[CheckOutcome] = []
            if checks:
                outcomes = await run_checks(checks, text, exempt=self.session.exempt)
                for o in outcomes:
                    self.session.excepted(o, text)
            redact = [s for o in outcomes if o.bound.action is Action.redact for s in o.spans]
            verdict = max(
                (o.verdict for o in outcomes if o.bound.enforced), key=lambda v: v.rank, default=Verdict.passed
            )
            self.session.add_step(
                Stage.reasoning,
                f"step {choice.step_count}",
                verdict,
                detail={"choice": choice.index, "checks": len(outcomes)},
                text=self.session.stored(text, redact),
            )
            for o in outcomes:
                self.session.add_outcome(Stage.reasoning, text, o, step=choice.step_count, choice=choice.index)
            blocking = next((o for o in outcomes if o.applies and o.verdict in (Verdict.block, Verdict.error)), None)
            if blocking is not None and not self.stopped:
                self.stopped = True
                self.session.record.status = Status.blocked
                self.session.record.finish_reason = "content_filter"

    # -- stream hits, blocks and the output stage ----------------------------------------

    def _block(self, hit: StreamHit, channel: str) -> None:
        self.stopped = True
        self.session.record.status = Status.blocked
        self.session.record.finish_reason = "content_filter"
        self._hit_step(hit, channel)

    def record_stream_hits(self) -> None:
        """One audit step per stream check that acted, with its spans (no raw values).

        Once per response: the output stage, a block and the error and disconnect paths all
        call it, and a client that leaves while an output check runs reaches two of them."""
        if self._hits_recorded:
            return
        self._hits_recorded = True
        for choice in self.choices.values():
            scanners = [("content", choice.content), ("reasoning", choice.reasoning)]
            scanners += [(f"tool_call[{i}]", s) for i, s in choice.tools.items()]
            for channel, scanner in scanners:
                by_check: dict[str, list[StreamHit]] = {}
                for hit in scanner.hits:
                    if hit.bound.action is Action.block:
                        continue  # recorded when it happened
                    by_check.setdefault(hit.bound.name, []).append(hit)
                for hits in by_check.values():
                    self._hits_step(hits, channel, scanner.scan_ms)
        self._restore_step()

    def _restore_step(self) -> None:
        """Which of the request's placeholders the answer carried and got back as values: the
        placeholders and fingerprints, never the values. Its spans are where they stand in the
        first choice's answer, which the stored answer shows as placeholders again."""
        table = self.session.pseudonyms
        if not table or self._restore_recorded:
            return
        self._restore_recorded = True
        first = self.choices.get(0)
        text = "".join(first.sent) if first else ""
        self.session.add_step(
            Stage.stream,
            "restore",
            Verdict.passed,
            spans=self.session.span_records(text, table.spans_in(text)),
            detail=table.summary(),
        )

    def _hit_step(self, hit: StreamHit, channel: str) -> None:
        self._hits_step([hit], channel, 0.0)

    def _hits_step(self, hits: list[StreamHit], channel: str, scan_ms: float) -> None:
        bound = hits[0].bound
        self.session.add_step(
            Stage.stream,
            bound.name,
            Verdict.block if bound.action is Action.block else Verdict.redact,
            score=max(h.span.score for h in hits),
            spans=[span_record(h.span, h.value) for h in hits],
            latency_ms=scan_ms,
            detail={"channel": channel, "count": len(hits)},
        )

    async def _output_stage(self) -> bool:
        """Output checks on each choice's finished text (plus stream checks that only
        flag or monitor); returns whether an enforced check blocks the answer."""
        self.record_stream_hits()
        policy = self.session.policy
        late_stream = [b for b in policy.stream if not b.changes_text]
        output_checks = self._output_checks()
        blocked = False
        for choice in self.choices.values():
            text = "".join(choice.sent)
            outcomes = await self.session.run_stage(Stage.output, output_checks, text)
            if late_stream:
                outcomes += await self.session.run_stage(Stage.stream, late_stream, text)
            self.redactions[choice.index] = [
                s for o in outcomes if o.applies and o.verdict is Verdict.redact for s in o.spans
            ]
            if any(o.applies and o.verdict in (Verdict.block, Verdict.error) for o in outcomes):
                blocked = True
            all_redact = [s for o in outcomes if o.bound.action is Action.redact for s in o.spans]
            if choice.index == 0:
                self.session.record.output_text = self.session.stored(text, all_redact)
        if blocked:
            self.session.record.status = Status.blocked
            self.session.record.finish_reason = "content_filter"
        else:
            first = self.choices.get(0)
            self.session.record.finish_reason = first.finish_reason if first else None
        return blocked

    def _output_checks(self) -> list[BoundCheck]:
        """The policy's output checks for this request, each as it follows the request's
        ``response_format`` (``Check.for_response_format``: ``json_schema`` without a schema
        of its own checks the schema the client sent, or nothing for a plain-text request)."""
        checks = []
        for bound in self.session.policy.output:
            try:
                check = bound.check.for_response_format(self.response_format)
            except ValueError as exc:  # the client's schema is invalid: say so in the record
                self.session.add_step(
                    Stage.output,
                    bound.name,
                    Verdict.passed,
                    detail={"skipped": f"invalid response_format schema: {exc}"},
                )
                continue
            if check is None:
                continue
            if check is not bound.check:
                bound = replace(bound, check=check)
            checks.append(bound)
        return checks

    def _output_redactions(self, index: int) -> list[Span]:
        return self.redactions.get(index, [])

    # -- chunk building --------------------------------------------------------------------

    def _usage_to_record(self) -> None:
        if self.usage:
            self.session.record.prompt_tokens = self.usage.get("prompt_tokens")
            self.session.record.completion_tokens = self.usage.get("completion_tokens")

    def _delta_choice(self, index: int, delta: dict[str, Any]) -> dict[str, Any]:
        if self.kind == "chat":
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
        return {"index": index, "text": "", "logprobs": None, "finish_reason": None}

    def _wrap(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
        chunk = dict(self.template or {"object": "chat.completion.chunk"})
        chunk["choices"] = choices
        if usage is not None:
            chunk["usage"] = usage
        return chunk

    def _stop_chunk(self, choice: Choice, emitted: dict[str, Any] | None) -> dict[str, Any]:
        """The last chunk of a stream ended by a block: what was safe to send, then content_filter."""
        last = dict(emitted) if emitted else self._delta_choice(choice.index, {})
        last["finish_reason"] = "content_filter"
        self.session.record.finish_reason = "content_filter"
        self.record_stream_hits()
        return self._wrap([last])

    def _merge(self, out: dict[str, Any], tail: dict[str, Any]) -> dict[str, Any]:
        merged = self._strip_finish(out) or self._delta_choice(out.get("index", 0), {})
        if self.kind == "chat":
            delta = dict(merged.get("delta") or {})
            for k, v in (tail.get("delta") or {}).items():
                delta[k] = delta.get(k, "") + v if isinstance(v, str) else v
            merged["delta"] = delta
        else:
            merged["text"] = (merged.get("text") or "") + tail.get("text", "")
        return merged

    def _strip_finish(self, out: dict[str, Any]) -> dict[str, Any] | None:
        stripped = {**out, "finish_reason": None}
        return None if self._empty(stripped) else stripped

    def _empty(self, out: dict[str, Any]) -> bool:
        if out.get("finish_reason"):
            return False
        if self.kind == "completion":
            return not out.get("text")
        delta = out.get("delta") or {}
        return not any(v not in (None, "", []) for v in delta.values())
