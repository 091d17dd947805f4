"""Decide what the simulated model says: from a script, the model's name, or the request itself."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.simulator import content
from gateway.simulator.schema import Script
from gateway.simulator.text import count_tokens, limit

_call_ids = itertools.count(1)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Prompt:
    """What of a request shapes the reply, shared by chat and legacy completions."""

    model: str
    last_user: str
    ends_with_user: bool = True
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None


@dataclass(frozen=True)
class Reply:
    content: str | None
    reasoning: str
    reasoning_field: str
    tool_call: ToolCall | None
    finish_reason: str

    @property
    def reasoning_tokens(self) -> int:
        return count_tokens(self.reasoning)

    @property
    def completion_tokens(self) -> int:
        tool = count_tokens(self.tool_call.arguments) + 1 if self.tool_call else 0
        return count_tokens(self.content or "") + self.reasoning_tokens + tool


def compose(prompt: Prompt, script: Script | None) -> Reply:
    text = script.content if script else None
    tool = _scripted_tool(script) if script and script.tool_call else None
    if text is None and tool is None:
        tool = _requested_tool(prompt)
        if tool is None:
            text = _default_text(prompt)
    reasoning, field = _reasoning(prompt, script)
    if field == "think":
        # Inline <think> needs visible text to sit in front of; a bare tool call keeps the field.
        if text is not None and reasoning:
            text, reasoning = f"<think>\n{reasoning}</think>\n\n{text}", ""
        field = "reasoning_content"
    finish = "tool_calls" if tool else "stop"
    if text is not None:
        text, cut = limit(text, list(prompt.stop), prompt.max_tokens)
        finish = "length" if cut == "length" else finish
    return Reply(text, reasoning, field, tool, finish)


def _reasoning(prompt: Prompt, script: Script | None) -> tuple[str, str]:
    model = prompt.model.lower()
    field = "think" if "think" in model else "reasoning_content"
    if script and script.reasoning_field:
        field = script.reasoning_field
    if script and script.reasoning is not None:
        return script.reasoning, field
    if "reason" in model or "think" in model:
        return content.reasoning_steps(prompt.last_user), field
    return "", field


def _default_text(prompt: Prompt) -> str:
    count = content.tokens_from_model(prompt.model)
    if count is not None:
        return content.filler(count)
    reply = content.answer(prompt.model, prompt.last_user)
    kind = (prompt.response_format or {}).get("type")
    if kind == "json_object":
        return orjson.dumps({"answer": reply}).decode()
    if kind == "json_schema":
        schema = (prompt.response_format or {}).get("json_schema", {}).get("schema", {})
        return orjson.dumps(content.example_for_schema(schema)).decode()
    return reply


def _scripted_tool(script: Script) -> ToolCall:
    spec = script.tool_call
    assert spec is not None
    args = spec.arguments if isinstance(spec.arguments, str) else orjson.dumps(spec.arguments).decode()
    return ToolCall(spec.id or _next_call_id(), spec.name, args)


def _requested_tool(prompt: Prompt) -> ToolCall | None:
    """A call when tools are offered and the user's last message asks for one (or the caller forces it)."""
    functions = [t["function"] for t in prompt.tools or [] if isinstance(t.get("function"), dict)]
    if not functions or not prompt.ends_with_user or prompt.tool_choice == "none":
        return None
    choice = prompt.tool_choice
    asked = prompt.last_user.lower()
    chosen: dict[str, Any] | None = None
    if isinstance(choice, dict):
        forced = choice.get("function", {}).get("name")
        chosen = next((f for f in functions if f.get("name") == forced), None)
    else:
        chosen = next((f for f in functions if str(f.get("name", "")).lower() in asked), None)
        if chosen is None and (choice == "required" or "tool" in asked):
            chosen = functions[0]
    if chosen is None:
        return None
    arguments = content.example_for_schema(chosen.get("parameters") or {"type": "object"})
    return ToolCall(_next_call_id(), str(chosen.get("name", "tool")), orjson.dumps(arguments).decode())


def _next_call_id() -> str:
    return f"call_sim_{next(_call_ids):06d}"
