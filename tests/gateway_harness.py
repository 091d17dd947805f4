"""Run a real Warden gateway (uvicorn on a loopback port) for tests, in this process.

The gateway runs in a thread with its own event loop, exactly as ``warden serve`` runs it,
and tests talk to it over HTTP with the real ``openai`` SDK.
"""

from __future__ import annotations

import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import uvicorn

from gateway.app import create_app
from gateway.config import load_config
from gateway.service import Gateway

CLIENT_KEY = "sk-test-client-0001"
REVIEWER_KEY = "sk-test-reviewer-01"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_POLICY = REPO / "policies" / "default.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    folder: Path,
    upstream_base: str,
    *,
    policy: str | None = None,
    policy_text: str | None = None,
    database_url: str | None = None,
    extra: str = "",
    models: tuple[str, ...] = ("gpt-4o-mini", "sim-reasoner", "sim-think", "text-embedding-3-small"),
    other_upstreams: dict[str, str] | None = None,
) -> Path:
    """A gateway config in ``folder`` serving ``models`` from the simulator at ``upstream_base``."""
    folder.mkdir(parents=True, exist_ok=True)
    if policy_text is not None:
        (folder / "policy.yaml").write_text(textwrap.dedent(policy_text), encoding="utf-8")
        policy = "policy.yaml"
    model_list = "\n".join(
        f'  - model_name: {m}\n    litellm_params: {{model: openai/{m}, api_base: "{base}", api_key: sk-sim}}'
        for m, base in [*((m, upstream_base) for m in models), *(other_upstreams or {}).items()]
    )
    text = (
        f"model_list:\n{model_list}\n"
        f"policy: {policy or DEFAULT_POLICY}\n"
        f"database_url: {database_url or 'sqlite:///./warden.db'}\n"
        f"keys:\n  - {{key: {CLIENT_KEY}, tenant: acme, id: client-1}}\n"
        f"  - {{key: {REVIEWER_KEY}, tenant: acme, role: reviewer, id: reviewer-1}}\n"
        f"{textwrap.dedent(extra)}"
    )
    path = folder / "warden.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class RunningGateway:
    url: str
    gateway: Gateway
    server: uvicorn.Server

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def client(self, key: str = CLIENT_KEY, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, **kwargs)

    def flush_audit(self, timeout: float = 10.0) -> None:
        flush = getattr(self.gateway.audit, "flush", None)
        if flush is not None:
            flush(timeout)


@contextmanager
def running_gateway(config_path: Path) -> Iterator[RunningGateway]:
    config = load_config(config_path)
    gateway = Gateway(config)
    app = create_app(config, gateway)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="test-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("gateway did not start")
        time.sleep(0.02)
    try:
        yield RunningGateway(f"http://127.0.0.1:{port}", gateway, server)
    finally:
        server.should_exit = True
        thread.join(15)
