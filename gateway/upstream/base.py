"""What the pipeline needs from a model provider, whatever carries the call."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Literal, Protocol

Endpoint = Literal["chat/completions", "completions", "embeddings"]


class Upstream(Protocol):
    """One public model name's way to its provider(s)."""

    route: str  # "fast" or "litellm", recorded on the audit step

    async def call(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        """A whole response, as the OpenAI JSON object."""
        ...

    def stream(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Chunks as OpenAI JSON objects, in batches (never empty) that leave in one write;
        raises ``UpstreamError`` before or during the stream. Closing the iterator
        (``aclose``) cancels the upstream call."""
        ...

    async def aclose(self) -> None: ...
