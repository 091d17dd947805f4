"""Request bodies of the OpenAI-compatible routes, as pydantic models.

The models check, before anything reaches an upstream, what OpenAI itself checks: the types
of every field the gateway reads (``model``, ``messages`` and their parts, ``tools``,
``stream``, ...) and the ranges of the sampling parameters (``max_tokens``, ``n``,
``temperature``, ``top_p``, penalties, ...), plus the configured caps on messages, tools and
inputs (``limits`` in the config). A refusal is a 400 naming the field. Every other parameter
is passed to the upstream unchanged, except the fields that would let a client choose where
or with which credentials the call goes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

# Fields that steer litellm or an SDK to another endpoint or credential. A client must
# never pick the upstream: the gateway talks only to the deployments in its config.
ROUTING_FIELDS = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "api_type",
        "organization",
        "user_config",
        "extra_body",
        "extra_headers",
        "extra_query",
        "headers",
        "custom_llm_provider",
        "deployment_id",
        "model_list",
        "litellm_params",
        "fallbacks",
        "context_window_fallbacks",
        "mock_response",
        "mock_tool_calls",
        "mock_timeout",
        "timeout",
        "num_retries",
        "max_retries",
        "proxy_base_url",
        "input_cost_per_token",
        "output_cost_per_token",
        "caching",
        "cache",
        "client",
        "router",
        "azure_ad_token",
        "azure_ad_token_provider",
        "region_name",
        "project",
        "location",
    }
)
ROUTING_PREFIXES = ("litellm_", "aws_", "vertex_", "azure_", "watsonx_", "bedrock_")


def strip_routing(body: dict[str, Any]) -> list[str]:
    """Remove client-supplied routing fields in place; returns their names (for the record)."""
    dropped = [k for k in body if k in ROUTING_FIELDS or k.startswith(ROUTING_PREFIXES)]
    for key in dropped:
        del body[key]
    return sorted(dropped)


class RequestLimits(BaseModel):
    """Gateway-side caps on a request's size, beyond the body's byte limit (config ``limits``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: most messages in one chat request (OpenAI's own cap is 2048)
    max_messages: int = Field(default=2048, ge=1)
    #: most tools (function definitions) in one request (OpenAI's own cap is 128)
    max_tools: int = Field(default=128, ge=0)
    #: most prompts / inputs in one completions or embeddings request
    max_inputs: int = Field(default=2048, ge=1)


DEFAULT_LIMITS = RequestLimits()

# OpenAI's own ranges. Strict types: "5" is not a number and true is not 1, as OpenAI answers.
_Int = Annotated[int, Strict()]
_Bool = Annotated[bool, Strict()]
_Str = Annotated[str, Strict()]
Temperature = Annotated[float, Strict(), Field(ge=0, le=2)]
TopP = Annotated[float, Strict(), Field(ge=0, le=1)]
Penalty = Annotated[float, Strict(), Field(ge=-2, le=2)]
Tokens = Annotated[int, Strict(), Field(ge=1)]
Seed = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)]
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Open(BaseModel):
    """Unknown fields pass through to the upstream; the fields named here are type-checked."""

    model_config = ConfigDict(extra="allow")


class ContentPart(_Open):
    type: _Str = Field(min_length=1, max_length=64)
    text: _Str | None = None


class FunctionCall(_Open):
    name: _Str | None = None
    arguments: _Str | None = None


class ToolCall(_Open):
    id: _Str | None = None
    type: _Str | None = None
    function: FunctionCall | None = None


class Message(_Open):
    role: Role
    content: _Str | list[ContentPart | _Str] | None = None
    name: _Str | None = Field(default=None, max_length=256)
    tool_calls: list[ToolCall] | None = None
    tool_call_id: _Str | None = None


class StreamOptions(_Open):
    include_usage: _Bool | None = None


class FunctionDef(_Open):
    name: _Str = Field(min_length=1, max_length=64)
    description: _Str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Open):
    type: _Str
    function: FunctionDef | None = None


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]


class _Sampling(_Open):
    model: _Str = Field(min_length=1, max_length=256)
    stream: _Bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: Tokens | None = None
    n: Annotated[int, Strict(), Field(ge=1, le=16)] | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    seed: Seed | None = None
    stop: _Str | Annotated[list[_Str], Field(max_length=4)] | None = None
    logit_bias: dict[str, Annotated[float, Strict(), Field(ge=-100, le=100)]] | None = None
    user: _Str | None = None


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Tokens | None = None
    logprobs: _Bool | None = None
    top_logprobs: Annotated[int, Strict(), Field(ge=0, le=20)] | None = None
    tools: list[Tool] | None = None
    tool_choice: _Str | dict[str, Any] | None = None
    parallel_tool_calls: _Bool | None = None
    response_format: ResponseFormat | None = None

    @model_validator(mode="after")
    def _within_limits(self, info: ValidationInfo) -> ChatRequest:
        limits = _limits(info)
        if len(self.messages) > limits.max_messages:
            raise PydanticCustomError(
                "too_many", "at most {limit} messages are allowed", {"limit": limits.max_messages, "field": "messages"}
            )
        if self.tools is not None and len(self.tools) > limits.max_tools:
            raise PydanticCustomError(
                "too_many", "at most {limit} tools are allowed", {"limit": limits.max_tools, "field": "tools"}
            )
        return self


PromptList = list[_Str] | list[_Int] | list[list[_Int]]


class CompletionRequest(_Sampling):
    prompt: _Str | PromptList
    logprobs: Annotated[int, Strict(), Field(ge=0, le=5)] | None = None
    echo: _Bool | None = None
    best_of: Annotated[int, Strict(), Field(ge=1, le=20)] | None = None
    suffix: _Str | None = None

    @model_validator(mode="after")
    def _within_limits(self, info: ValidationInfo) -> CompletionRequest:
        _check_inputs(self.prompt, "prompt", info)
        return self


class EmbeddingRequest(_Open):
    model: _Str = Field(min_length=1, max_length=256)
    input: _Str | PromptList
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Strict(), Field(ge=1)] | None = None
    user: _Str | None = None

    @model_validator(mode="after")
    def _within_limits(self, info: ValidationInfo) -> EmbeddingRequest:
        _check_inputs(self.input, "input", info)
        return self


def _limits(info: ValidationInfo) -> RequestLimits:
    context = info.context if isinstance(info.context, dict) else {}
    limits = context.get("limits")
    return limits if isinstance(limits, RequestLimits) else DEFAULT_LIMITS


def _check_inputs(value: object, field: str, info: ValidationInfo) -> None:
    limit = _limits(info).max_inputs
    if isinstance(value, list) and value and not isinstance(value[0], int) and len(value) > limit:
        raise PydanticCustomError("too_many", "at most {limit} inputs are allowed", {"limit": limit, "field": field})
    if isinstance(value, list) and not value:
        raise PydanticCustomError("too_short", "must not be empty", {"field": field})
