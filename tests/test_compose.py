"""compose.yaml is a valid Compose file that runs the gateway as replicas on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def compose_config() -> dict[str, object]:
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("docker-compose is not installed (.ci/run installs it)")
        pytest.skip("docker-compose is not installed")
    env = {**os.environ, "WARDEN_AUDIT_KEY": "test"}
    done = subprocess.run(
        [tool, "-f", str(REPO / "compose.yaml"), "config"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)  # type: ignore[no-any-return]


def test_compose_file_is_valid_and_scaled_out() -> None:
    config = compose_config()
    services = config["services"]
    assert isinstance(services, dict)
    assert {"gateway", "postgres", "redis", "otel-collector", "dashboard", "migrate"} <= services.keys()
    gateway = services["gateway"]
    assert gateway["deploy"]["replicas"] >= 2
    assert gateway["environment"]["WARDEN_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_requires_an_audit_key() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed")
    env = {k: v for k, v in os.environ.items() if k != "WARDEN_AUDIT_KEY"}
    done = subprocess.run(
        [tool, "-f", str(REPO / "compose.yaml"), "config"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode != 0
    assert "WARDEN_AUDIT_KEY" in done.stderr


def test_deploy_config_is_a_valid_gateway_config() -> None:
    from gateway.config import load_config

    config = load_config(REPO / "deploy" / "warden.yaml")
    assert config.model_list[0].model_name == "gpt-4o-mini"
