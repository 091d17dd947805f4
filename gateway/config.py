"""The gateway's config file: strict pydantic models, loaded with file/line errors.

``WARDEN_CONFIG`` names the file when ``--config`` is not given; ``WARDEN_DATABASE_URL``
overrides ``database_url``. Relative paths (policies, SQLite files, spool) resolve against
the folder of the config file, so a config works from any working directory.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from audit.settings import AnchorSettings, BrokerSettings, RetentionDays, SyslogSettings
from gateway.api_models import RequestLimits
from policies.yamlio import FieldError, YamlModelError, load_model_file

DEFAULT_CONFIG_ENV = "WARDEN_CONFIG"
DATABASE_ENV = "WARDEN_DATABASE_URL"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Role = Literal["client", "reviewer", "admin"]


class KeyConfig(Strict):
    """An API key: given in the clear (``key``) or as the hex SHA-256 of it (``key_sha256``)."""

    key: str | None = Field(default=None, min_length=8, repr=False)
    key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    tenant: str = Field(min_length=1)
    role: Role = "client"
    policy: str | None = None
    id: str | None = None
    #: requests per minute for this key, across all replicas when ``redis_url`` is set
    rpm: int | None = Field(default=None, ge=1)
    #: tokens (prompt + completion) per minute for this key, across all replicas likewise
    tpm: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_form(self) -> KeyConfig:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of 'key' or 'key_sha256'")
        return self

    @property
    def digest(self) -> str:
        if self.key_sha256 is not None:
            return self.key_sha256.lower()
        assert self.key is not None
        return hashlib.sha256(self.key.encode()).hexdigest()

    @property
    def key_id(self) -> str:
        """A stable, non-secret name for the key: its own id or a digest prefix."""
        return self.id or f"key_{self.digest[:12]}"


class DeploymentParams(BaseModel):
    """litellm ``litellm_params``: passed to litellm unchanged, so extra keys are allowed."""

    model_config = ConfigDict(extra="allow", frozen=True)
    model: str = Field(min_length=1)
    api_base: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    timeout: float | None = None


class Deployment(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    model_name: str = Field(min_length=1)
    litellm_params: DeploymentParams


class UpstreamSettings(Strict):
    timeout_s: float = Field(default=600.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    #: seconds to wait for the upstream's first byte, and then for each next one, before the
    #: request is abandoned with a 504 (never retried). A non-streamed reply's first byte comes
    #: only when the whole answer is generated: raise this for long non-streamed generations.
    read_timeout_s: float = Field(default=60.0, gt=0)
    num_retries: int = Field(default=1, ge=0, le=10)
    #: forward OpenAI-compatible deployments with the gateway's own HTTP client instead of litellm
    #: (measured many times faster per token; see README, Performance)
    fast_path: bool = True
    #: open connections per upstream origin on the fast path (busy + idle); requests beyond
    #: wait up to ``connect_timeout_s`` for one to come free
    max_connections_per_origin: int = Field(default=100, ge=1, le=10_000)
    #: speak HTTP/2 to fast-path upstreams (through httpx; prior knowledge on http://). Off, an
    #: origin that answers only in HTTP/2 is refused with an error naming this setting.
    http2: bool = False
    fallbacks: list[dict[str, list[str]]] = Field(default_factory=list)


class AuditConfig(Strict):
    enabled: bool = True
    spool_dir: str = "./warden-spool"
    chain_id: str | None = None
    batch_size: int = Field(default=500, ge=1)
    #: "queued": answer at once, the record follows within the writer's batch interval;
    #: "durable": hold each answer until its record is in the database or the fsynced spool
    ack: Literal["queued", "durable"] = "queued"
    #: with ack "durable": how long an answer may wait for its record before it is refused (503)
    ack_timeout_s: float = Field(default=10.0, gt=0)
    #: signed chain heads published outside the database (``audit.read.anchors``)
    anchors: AnchorSettings | None = None
    #: days to keep stored texts, for all tenants or per tenant (``{"*": 90, "acme": 30}``)
    retention_days: RetentionDays | None = None
    #: days after which whole records are pruned (all tenants)
    prune_days: int | None = Field(default=None, ge=1)
    #: seconds between retention runs in the gateway
    retention_interval_s: float = Field(default=3600.0, gt=0)
    #: stream committed requests as OCSF events over RFC 5424 syslog
    syslog: SyslogSettings | None = None
    #: publish records to NATS JetStream; ``warden audit writer`` processes commit them
    broker: BrokerSettings | None = None


class TelemetryConfig(Strict):
    exporter: Literal["none", "console", "otlp"] | None = None
    service_name: str = "warden"


class FleetSettings(Strict):
    """How a replica follows what the fleet shares through the database."""

    #: seconds between polls of the database for key changes and policy activations (0: never)
    poll_s: float = Field(default=1.0, ge=0)


class CorsSettings(Strict):
    """Cross-origin access for browser apps. Off (no CORS headers at all) unless origins are given."""

    allow_origins: list[str] = Field(default_factory=list)
    allow_headers: list[str] = Field(default_factory=lambda: ["authorization", "content-type"])
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST", "DELETE"])
    max_age_s: int = Field(default=600, ge=0)


class GatewayConfig(Strict):
    model_list: list[Deployment] = Field(min_length=1)
    policy: str = "policies/default.yaml"
    database_url: str = "sqlite:///./warden.db"
    #: may be empty when the keys live in the database (admin API, ``warden keys create --db``)
    keys: list[KeyConfig] = Field(default_factory=list)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    #: caps on messages, tools and inputs per request, checked before anything goes upstream
    limits: RequestLimits = Field(default_factory=RequestLimits)
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    policy_reload: bool = True
    redis_url: str | None = None
    fleet: FleetSettings = Field(default_factory=FleetSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)

    #: folder of the config file; relative paths resolve against it
    base_dir: Path = Field(default=Path("."), exclude=True)
    #: the file this was loaded from (None when built in code)
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique_keys(self) -> GatewayConfig:
        digests = [k.digest for k in self.keys]
        if len(digests) != len(set(digests)):
            raise ValueError("two keys have the same value")
        return self

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def resolved_database_url(self) -> str:
        url = os.environ.get(DATABASE_ENV) or self.database_url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
            return prefix + str(self.resolve(url[len(prefix) :]))
        return url

    def policy_paths(self) -> set[Path]:
        paths = {self.resolve(self.policy)}
        paths.update(self.resolve(k.policy) for k in self.keys if k.policy)
        return paths


def load_config(path: str | os.PathLike[str] | None = None) -> GatewayConfig:
    """Load the config named by ``path`` or ``$WARDEN_CONFIG``."""
    raw = path or os.environ.get(DEFAULT_CONFIG_ENV)
    if not raw:
        raise YamlModelError(
            [FieldError("<config>", None, "", f"no config file: pass --config or set {DEFAULT_CONFIG_ENV}")]
        )
    file = Path(raw).expanduser().resolve()
    config = load_model_file(GatewayConfig, file)
    return config.model_copy(update={"base_dir": file.parent, "source": file})


def env_value(value: str | None) -> str | None:
    """litellm's ``os.environ/NAME`` convention for secrets kept out of the file."""
    if value and value.startswith("os.environ/"):
        return os.environ.get(value.removeprefix("os.environ/"))
    return value


def config_summary(config: GatewayConfig) -> dict[str, Any]:
    """What may be logged about a config: never keys or upstream secrets."""
    return {
        "models": sorted({d.model_name for d in config.model_list}),
        "policy": str(config.resolve(config.policy)),
        "keys": len(config.keys),
        "database": config.resolved_database_url().split("@")[-1],
    }
