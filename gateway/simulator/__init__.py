"""A local OpenAI-compatible LLM simulator: the upstream for `make demo`, tests and benchmarks.

Routes: `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions`,
`POST /v1/embeddings`, `GET /health`; controls under `/_sim` (script, requests, stats, reset).
Replies are deterministic; models named `*reason*` stream `reasoning_content` steps, `*think*`
inline `<think>` steps, and `*tokens-N*` exactly N word tokens.
"""

from gateway.simulator.app import create_app
from gateway.simulator.server import run

__all__ = ["create_app", "run"]
