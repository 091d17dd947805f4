"""Pydantic models for what reaches the simulator: OpenAI request bodies and test scripts.

Request models ignore unknown fields, as OpenAI-compatible servers accept parameters they do
not use; the script model forbids them, so a typo in a test fails loudly instead of silently.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveInt

Fault = Literal["refuse_500", "status_429", "hang", "hang_mid_stream", "die_mid_stream", "malformed_chunk"]
Chunking = Literal["word", "char", "whole"] | PositiveInt
ReasoningField = Literal["reasoning_content", "reasoning", "think"]
#: whose chunk bytes a chat stream copies (see ``gateway.simulator.shapes``)
Shape = Literal["openai", "vllm", "ollama", "llamacpp", "tgi", "spaced"]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Lenient):
    include_usage: bool = False


class Message(_Lenient):
    role: str
    content: str | list[dict[str, Any]] | None = None

    @property
    def text(self) -> str:
        """The message's text, with text parts of a multi-part message joined."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return " ".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")


class ChatRequest(_Lenient):
    model: str
    messages: list[Message]
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=128)
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Lenient):
    model: str
    prompt: str | list[str] | list[int] | list[list[int]] = ""
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=128)
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=0)


class EmbeddingRequest(_Lenient):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    dimensions: int = Field(default=8, ge=1, le=4096)
    encoding_format: Literal["float", "base64"] = "float"


class ToolCallSpec(BaseModel):
    """A tool call the simulator answers with; `arguments` may be an object or a raw string."""

    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    id: str | None = None


class Script(BaseModel):
    """A scripted reply: applies to requests whose last user message contains `match`."""

    model_config = ConfigDict(extra="forbid")

    match: str = "*"
    model: str | None = None
    content: str | None = None
    reasoning: str | None = None
    reasoning_field: ReasoningField | None = None
    tool_call: ToolCallSpec | None = None
    chunking: Chunking = "word"
    shape: Shape | None = None
    delay_ms: NonNegativeFloat = 0.0
    fault: Fault | None = None
    fault_after: int | None = Field(default=None, ge=0)
    times: PositiveInt | None = None

    def matches(self, text: str, model: str) -> bool:
        if self.model is not None and self.model != model:
            return False
        return self.match == "*" or self.match in text
