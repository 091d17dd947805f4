"""Bringing one variant up: its server process, its URL and key, and how long it took to serve.

"Ready to serve" is measured from spawning the process to the first 200 on its health route,
and to the first successful (non-streamed) chat completion, which also pays for anything the
gateway loads lazily on its first request.
"""

from __future__ import annotations

import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks._loadgen import RequestFailed, check_reply
from benchmarks._procs import LOOPBACK, Server, StartError, free_port, log_tail, start_http_server, stop
from benchmarks._variants import Variant, litellm_config, warden_config

WARDEN_READY_TIMEOUT_S = 60.0
LITELLM_READY_TIMEOUT_S = 120.0
# Nothing leaves the machine: litellm must not fetch its cost map, nor log every request.
QUIET_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}


@dataclass(frozen=True)
class Startup:
    health_s: float
    first_completion_s: float


@dataclass(frozen=True)
class Target:
    variant: Variant
    base_url: str
    headers: dict[str, str]
    server: Server | None
    startup: Startup | None


async def _first_completion(server: Server, headers: dict[str, str], body: bytes) -> float:
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=120.0) as client:
            response = await client.post(f"{server.url}/v1/chat/completions", content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise StartError(f"{server.name}: first chat completion failed: {exc!r}\n{log_tail(server.log)}") from exc
    if response.status_code != 200:
        raise StartError(
            f"{server.name}: first chat completion failed with HTTP {response.status_code}: "
            f"{response.text[:300]}\n{log_tail(server.log)}"
        )
    ready = time.perf_counter() - server.spawned_at
    try:
        check_reply(response.content, stream=False)
    except RequestFailed as exc:
        raise StartError(f"{server.name}: first chat completion was not a full answer: {exc}") from exc
    return ready


def _headers(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "content-type": "application/json"}


async def launch(
    variant: Variant,
    *,
    upstream_url: str,
    workdir: Path,
    audit: bool,
    probe: bytes,
    env: dict[str, str] | None = None,
) -> Target:
    """Start ``variant`` against the simulator at ``upstream_url``; ``probe`` is the first request
    body; ``env`` is added to the server's environment (a proxy, say)."""
    upstream_v1 = f"{upstream_url}/v1"
    if variant.kind == "direct":
        return Target(variant, upstream_v1, _headers("sk-sim"), None, None)
    key = f"sk-bench-{secrets.token_hex(16)}"
    port = free_port()
    log = workdir / f"{variant.name}.log"
    if variant.kind == "warden":
        config = warden_config(workdir, variant, upstream_v1=upstream_v1, client_key=key, audit=audit)
        if variant.repo is not None:
            # Its packages come first on the path, ahead of this checkout's (installed editable).
            env = {**(env or {}), "PYTHONPATH": str(variant.repo)}
        argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
        argv += ["--host", LOOPBACK, "--port", str(port), "--log-level", "warning"]
        ready_path, timeout_s = "/health", WARDEN_READY_TIMEOUT_S
    else:
        binary = Path(sys.executable).parent / "litellm"
        if not binary.exists():
            raise StartError(f"LiteLLM Proxy is not installed ({binary} is missing): pip install 'litellm[proxy]'")
        config = litellm_config(workdir, upstream_v1=upstream_v1, master_key=key)
        argv = [str(binary), "--config", str(config), "--host", LOOPBACK, "--port", str(port)]
        ready_path, timeout_s = "/health/readiness", LITELLM_READY_TIMEOUT_S
    server, health_s = await start_http_server(
        variant.name,
        argv,
        port=port,
        log=log,
        env={**QUIET_ENV, **(env or {})},
        ready_path=ready_path,
        timeout_s=timeout_s,
    )
    headers = _headers(key)
    try:
        first_s = await _first_completion(server, headers, probe)
    except BaseException:
        await stop(server.process)
        raise
    return Target(variant, f"{server.url}/v1", headers, server, Startup(health_s, first_s))
