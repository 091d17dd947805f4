"""``warden demo``: the built-in upstream, the gateway and the dashboard, on SQLite.

Everything runs on loopback with demo keys; no API key or network is needed. The
config it writes (``var/demo/warden.yaml``) is an ordinary gateway config to copy from.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from policies import __file__ as _policies_init

DEMO_CLIENT_KEY = "sk-warden-demo"
DEMO_REVIEWER_KEY = "sk-warden-reviewer"
DEMO_ADMIN = ("admin", "warden-demo-admin")  # dashboard login printed at start; loopback only
DEFAULT_POLICY = Path(_policies_init).parent / "default.yaml"

CONFIG = """\
# Written by `warden demo`. Models are served by the built-in simulator on loopback.
model_list:
  - model_name: gpt-4o-mini
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:{up}/v1", api_key: sk-sim}}
  - model_name: sim-reasoner
    litellm_params: {{model: openai/sim-reasoner, api_base: "http://127.0.0.1:{up}/v1", api_key: sk-sim}}
  - model_name: sim-think
    litellm_params: {{model: openai/sim-think, api_base: "http://127.0.0.1:{up}/v1", api_key: sk-sim}}
  - model_name: text-embedding-3-small
    litellm_params: {{model: openai/text-embedding-3-small, api_base: "http://127.0.0.1:{up}/v1", api_key: sk-sim}}
policy: {policy}
database_url: sqlite:///./warden-demo.db
audit:
  spool_dir: ./spool
keys:
  - {{key: {client}, tenant: demo, id: demo-client}}
  - {{key: {reviewer}, tenant: demo, role: reviewer, id: demo-reviewer}}
"""


def write_config(workdir: Path, upstream_port: int) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "warden.yaml"
    path.write_text(
        CONFIG.format(
            up=upstream_port, policy=DEFAULT_POLICY.resolve(), client=DEMO_CLIENT_KEY, reviewer=DEMO_REVIEWER_KEY
        ),
        encoding="utf-8",
    )
    return path


def _spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", *args], env={**os.environ, **(env or {})})  # noqa: S603
    atexit.register(proc.terminate)
    return proc


def _wait(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up in {seconds:.0f} s")


def _prepare_dashboard(config: Path) -> None:
    """The demo database's schema and an admin login, so the dashboard opens ready to use."""
    from dashboard.auth import UserError, add_user
    from gateway.config import load_config

    try:
        add_user(load_config(config).resolved_database_url(), DEMO_ADMIN[0], "admin", DEMO_ADMIN[1])
    except UserError:
        pass  # created by an earlier demo run


def run_demo(*, port: int, upstream_port: int, dashboard_port: int, workdir: Path) -> None:
    config = write_config(workdir, upstream_port).resolve()
    _spawn(["gateway.simulator", "--host", "127.0.0.1", "--port", str(upstream_port)])
    _wait(f"http://127.0.0.1:{upstream_port}/health")
    if dashboard_port:
        _prepare_dashboard(config)
        live = {
            "WARDEN_DASHBOARD_GATEWAY_URL": f"http://127.0.0.1:{port}",
            "WARDEN_DASHBOARD_LIVE_KEY": DEMO_REVIEWER_KEY,
        }
        _spawn(["gateway.cli", "dashboard", "--config", str(config), "--port", str(dashboard_port)], env=live)
    print(
        f"\nWarden demo\n  gateway:   http://127.0.0.1:{port}/v1  (key {DEMO_CLIENT_KEY}; reviewer key "
        f"{DEMO_REVIEWER_KEY})\n  upstream:  http://127.0.0.1:{upstream_port}/v1 (built-in simulator)\n"
        + (
            f"  dashboard: http://127.0.0.1:{dashboard_port}  (login {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]})\n"
            if dashboard_port
            else ""
        )
        + f"  config:    {config}\n",
        flush=True,
    )
    import uvicorn

    from gateway.app import create_app
    from gateway.config import load_config

    uvicorn.run(create_app(load_config(config.resolve())), host="127.0.0.1", port=port, access_log=False)
