"""Run a real LiteLLM Proxy (``litellm --config ...``) on a loopback port, for tests and benchmarks.

with running_litellm_proxy(config_path, log_path) as proxy:
    client = openai.OpenAI(base_url=proxy.base_url, api_key=MASTER_KEY, max_retries=0)

The proxy runs with no database, so its one key is the master key ``MASTER_KEY`` (LiteLLM
refuses to start without one), with the local model cost map (nothing is fetched), and
with this repository on ``PYTHONPATH`` so a config can name
``gateway.litellm_plugin.WardenGuardrail``. Its output goes to ``log_path``, and the
tail of that log is in the error when it does not start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 180.0
MASTER_KEY = "sk-litellm-test-9f3c2a7e5b1d4c8a9e0f6b2d7a4c1e8f"
#: environment that would make the proxy want a database, a master key or the network
DROPPED_ENV = ("DATABASE_URL", "LITELLM_MASTER_KEY", "LITELLM_SALT_KEY", "STORE_MODEL_IN_DB", "REDIS_HOST")


@dataclass(frozen=True)
class LiteLLMProxy:
    url: str
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


def litellm_executable() -> Path:
    """The ``litellm`` script of the interpreter running the tests (the project's venv)."""
    return Path(sys.executable).parent / "litellm"


def litellm_config(
    folder: Path,
    upstream_base: str,
    models: tuple[str, ...],
    *,
    warden_config: Path | None = None,
    guardrail_params: str = "",
) -> Path:
    """A LiteLLM config serving ``models`` from an OpenAI-compatible upstream, with the
    Warden guardrail when ``warden_config`` is given."""
    model_list = "".join(
        f'  - model_name: {m}\n    litellm_params: {{model: openai/{m}, api_base: "{upstream_base}", api_key: sk-up}}\n'
        for m in models
    )
    text = (
        f"model_list:\n{model_list}"
        f"general_settings:\n  master_key: {MASTER_KEY}\n"
        # no retries: a test of an upstream failure sees it once, and at once
        "litellm_settings:\n  telemetry: false\n  num_retries: 0\n"
    )
    if warden_config is not None:
        text += textwrap.dedent(f"""\
            guardrails:
              - guardrail_name: warden
                litellm_params:
                  guardrail: gateway.litellm_plugin.WardenGuardrail
                  mode: [pre_call, post_call]
                  default_on: true
                  warden_config: {warden_config}
            """)
        text += textwrap.indent(textwrap.dedent(guardrail_params), " " * 6)
    path = folder / "litellm.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"litellm proxy exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            if httpx.get(f"{url}/health/readiness", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"litellm proxy did not become ready:\n{_tail(log_path)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the proxy shuts down and the plugin writes out its audit queue), then SIGKILL."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_litellm_proxy(config_path: Path, log_path: Path) -> Iterator[LiteLLMProxy]:
    port = _free_port()
    command = [str(litellm_executable()), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=config_path.parent, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, process, log_path)
        yield LiteLLMProxy(url, log_path)
    finally:
        stop(process)
