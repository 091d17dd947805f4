"""What the load benchmark compares, and the config file each gateway variant runs with.

Configs are written as JSON (a subset of YAML that both Warden and LiteLLM Proxy read), so
no value ever needs YAML quoting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CONFIGS = Path(__file__).resolve().parent / "configs"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_POLICY = REPO / "policies" / "default.yaml"
#: the simulator answers a model named ``*tokens-N*`` with exactly N word tokens
MODEL = "sim-tokens-200"
REPLY_TOKENS = 200

Kind = Literal["direct", "warden", "litellm"]


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    kind: Kind
    policy: Path | None = None
    fast_path: bool = True
    #: run Warden from this checkout (another revision, for a before/after run) instead of this one
    repo: Path | None = None


def all_variants(default_policy: Path = DEFAULT_POLICY) -> list[Variant]:
    return [
        Variant("direct", "direct upstream", "direct"),
        Variant("warden-empty", "Warden, empty policy", "warden", CONFIGS / "empty.yaml"),
        Variant("warden-regex", "Warden, regex-only policy", "warden", CONFIGS / "regex.yaml"),
        Variant("warden-default", "Warden, default policy", "warden", default_policy),
        Variant(
            "warden-default-litellm",
            "Warden, default policy, litellm",
            "warden",
            default_policy,
            fast_path=False,
        ),
        Variant("litellm-proxy", "LiteLLM Proxy passthrough", "litellm"),
    ]


def _deployment(upstream_v1: str) -> dict[str, object]:
    return {
        "model_name": MODEL,
        "litellm_params": {"model": f"openai/{MODEL}", "api_base": upstream_v1, "api_key": "sk-sim"},
    }


def warden_config(folder: Path, variant: Variant, *, upstream_v1: str, client_key: str, audit: bool) -> Path:
    """A ``warden serve`` config for ``variant``; the audit writer uses SQLite in ``folder`` when on."""
    assert variant.policy is not None
    config: dict[str, object] = {
        "model_list": [_deployment(upstream_v1)],
        "policy": str(variant.policy),
        "keys": [{"key": client_key, "tenant": "bench", "id": "bench-client"}],
        "upstream": {"fast_path": variant.fast_path},
        "database_url": f"sqlite:///./{variant.name}.db",
        "audit": {"enabled": audit, "spool_dir": f"./{variant.name}-spool"},
    }
    path = folder / f"{variant.name}.yaml"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def litellm_config(folder: Path, *, upstream_v1: str, master_key: str) -> Path:
    """LiteLLM Proxy as a plain passthrough: one deployment, no database, a master key only."""
    config = {
        "model_list": [_deployment(upstream_v1)],
        "general_settings": {"master_key": master_key},
    }
    path = folder / "litellm-proxy.yaml"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path
