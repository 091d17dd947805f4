"""What the dashboard runs against: the gateway's own config file, plus a few dashboard knobs.

The dashboard reads the same config as the gateway (``WARDEN_CONFIG``, set by ``warden
dashboard --config``), so it sees the same database and edits the same policy files the
gateway hot-reloads. Dashboard-only settings come from the environment:

* ``WARDEN_DASHBOARD_IDLE_MINUTES`` (default 30) and ``WARDEN_DASHBOARD_MAX_HOURS`` (default 12):
  a login ends after that much inactivity, or that long after it began, whichever is first.
* ``WARDEN_DASHBOARD_REGRESSION_SETS``: more labelled JSONL files or folders (``os.pathsep``
  separated) for the evaluation a policy change must pass before it is saved, besides the
  shipped red-team sets, the ruled requests and the ``redteam/`` folder beside the config.
* ``WARDEN_DASHBOARD_SECRET``: the key that signs session cookies; without it a random key is
  kept in ``<spool_dir>/dashboard/session.key`` (mode 0600), shared by dashboards on that folder.
* ``WARDEN_DASHBOARD_GATEWAY_URL`` and ``WARDEN_DASHBOARD_LIVE_KEY``: where the live page
  subscribes to ``GET /v1/audit/live`` (a reviewer key). Without them the live page follows
  the database only. The key is read from the environment, never shown or logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gateway.config import DEFAULT_CONFIG_ENV, load_config

IDLE_ENV = "WARDEN_DASHBOARD_IDLE_MINUTES"
MAX_ENV = "WARDEN_DASHBOARD_MAX_HOURS"
GATEWAY_URL_ENV = "WARDEN_DASHBOARD_GATEWAY_URL"
LIVE_KEY_ENV = "WARDEN_DASHBOARD_LIVE_KEY"
REGRESSION_ENV = "WARDEN_DASHBOARD_REGRESSION_SETS"
SECRET_ENV = "WARDEN_DASHBOARD_SECRET"  # noqa: S105 - the variable's name, not a secret


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    config_dir: Path
    database_url: str
    default_policy: Path
    policy_paths: tuple[Path, ...]
    spool_dir: Path
    idle_timeout_s: float
    max_session_s: float
    gateway_url: str | None
    #: deployment JSONL files / folders added to the regression evaluation
    regression_sets: tuple[Path, ...] = ()

    @property
    def live_key(self) -> str | None:
        """Read on use, so the key never sits in a settings object that might be printed."""
        return os.environ.get(LIVE_KEY_ENV) or None


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if value > 0 else default


def load_settings(config_path: str | None = None) -> DashboardSettings:
    """Settings from ``config_path`` or ``$WARDEN_CONFIG``; raises ``YamlModelError`` on a bad file."""
    config = load_config(config_path or os.environ.get(DEFAULT_CONFIG_ENV))
    default_policy = config.resolve(config.policy)
    return DashboardSettings(
        config_dir=config.base_dir,
        database_url=config.resolved_database_url(),
        default_policy=default_policy,
        policy_paths=(default_policy, *sorted(p for p in config.policy_paths() if p != default_policy)),
        spool_dir=config.resolve(config.audit.spool_dir) / "dashboard",
        idle_timeout_s=_float_env(IDLE_ENV, 30) * 60,
        max_session_s=_float_env(MAX_ENV, 12) * 3600,
        gateway_url=(os.environ.get(GATEWAY_URL_ENV) or "").rstrip("/") or None,
        regression_sets=(
            config.base_dir / "redteam",
            *(config.resolve(p) for p in (os.environ.get(REGRESSION_ENV) or "").split(os.pathsep) if p.strip()),
        ),
    )


def safe_url(url: str) -> str:
    """A database URL fit to show: the password is masked."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: show only its scheme
        return url.split(":", 1)[0] + "://…"
