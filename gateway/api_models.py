"""Request bodies of the OpenAI-compatible routes, as pydantic models.

The models check what the gateway itself relies on (types of ``model``, ``messages``,
``stream``, ``n``, ...); every other parameter is passed to the upstream unchanged, except
the fields that would let a client choose where or with which credentials the call goes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Message(_Open):
    role: str = Field(min_length=1, max_length=64)
    content: str | list[dict[str, Any] | str] | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None


class ChatRequest(_Open):
    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=16)
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Open):
    model: str = Field(min_length=1, max_length=256)
    prompt: str | list[str] | list[int] | list[list[int]]
    stream: bool | None = False
    n: int | None = Field(default=None, ge=1, le=16)


class EmbeddingRequest(_Open):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] | list[int] | list[list[int]]
