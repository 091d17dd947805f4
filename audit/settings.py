"""Config models for the audit trail's outward-facing parts: anchors, retention, sinks.

Pydantic only (no cryptography, no database), so the gateway's config can name them without
importing what they configure. Unknown keys are errors, as everywhere in the config.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _syslog_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("udp://", "tcp://")):
        raise ValueError("syslog must be udp://HOST:PORT or tcp://HOST:PORT")
    return value


def _http_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


class AnchorSettings(_Strict):
    """``audit.anchors``: where signed chain heads are published, and how often."""

    #: folder of append-only JSONL files, one per publishing process and UTC day (null: none)
    dir: str | None = "./anchors"
    interval_s: float = Field(default=60.0, gt=0)
    #: the Ed25519 private key (PEM) made by ``warden audit anchor-key``; never in the database
    key_file: str
    #: the matching public key (base64, as ``anchor-key`` prints it): what ``verify`` trusts
    public_key: str | None = None
    #: also POST each batch of heads here (JSON), best effort
    webhook_url: str | None = None
    #: also send each head as an RFC 5424 message (``udp://host:514``, ``tcp://host:6514``)
    syslog: str | None = None

    _check_syslog = field_validator("syslog")(_syslog_url)
    _check_webhook = field_validator("webhook_url")(_http_url)

    @model_validator(mode="after")
    def _somewhere(self) -> AnchorSettings:
        if not (self.dir or self.webhook_url or self.syslog):
            raise ValueError("anchors need somewhere to go: dir, webhook_url or syslog")
        return self


class SyslogSettings(_Strict):
    """``audit.syslog``: stream every committed request as an OCSF event over RFC 5424 syslog."""

    url: str
    app_name: str = "warden"
    #: RFC 5424 facility number (16 = local0)
    facility: int = Field(default=16, ge=0, le=23)
    interval_s: float = Field(default=5.0, gt=0)

    _check_url = field_validator("url")(_syslog_url)


def _retention(value: int | dict[str, int]) -> dict[str, int]:
    days = {"*": value} if isinstance(value, int) else dict(value)
    bad = sorted(t for t, d in days.items() if d < 1)
    if bad:
        raise ValueError(f"retention days must be at least 1 (tenants {', '.join(bad)})")
    return days


#: ``audit.retention_days``: ``90`` (every tenant) or ``{"*": 90, "acme": 30}``; texts of
#: records older than that are erased (the chain still verifies)
RetentionDays = Annotated[int | dict[str, int], AfterValidator(_retention)]


def retention_for(days: dict[str, int], tenant: str) -> int | None:
    return days.get(tenant, days.get("*"))


class AlertRule(_Strict):
    """One condition that sends an alert.

    ``block``: a request was blocked; ``flag_rate``: a check (``check``, or any) acted on more
    than ``threshold`` (0..1) of the requests in the last ``window_s`` (at least
    ``min_requests`` of them); ``writer_behind``: the audit writer's queue holds more than
    ``threshold`` records or it is spooling; ``verify_failed``: ``warden audit verify`` failed.
    """

    on: Literal["block", "flag_rate", "writer_behind", "verify_failed"]
    check: str | None = None
    threshold: float | None = Field(default=None, ge=0)
    window_s: float = Field(default=300.0, gt=0)
    min_requests: int = Field(default=20, ge=1)


class AlertSettings(_Strict):
    """A policy's ``alerts:``: where alerts go and when. The HMAC secret comes from the
    environment variable ``secret_env``, never from the policy file."""

    webhook_url: str
    _check_webhook = field_validator("webhook_url")(_http_url)
    secret_env: str = "WARDEN_ALERT_SECRET"  # noqa: S105 - the name of a variable, not a secret
    rules: tuple[AlertRule, ...] = Field(min_length=1)
    #: alerts raised within this many seconds go in one POST
    batch_s: float = Field(default=2.0, gt=0)
    max_batch: int = Field(default=100, ge=1)
    retries: int = Field(default=5, ge=0)
    backoff_s: float = Field(default=0.5, gt=0)


def _nats_url(value: str) -> str:
    if not value.startswith(("nats://", "tls://")):
        raise ValueError("must be a nats:// or tls:// URL")
    return value


class BrokerSettings(_Strict):
    """``audit.broker``: publish records to NATS JetStream instead of committing them; separate
    ``warden audit writer --from-nats`` processes drain the stream into the database."""

    url: Annotated[str, AfterValidator(_nats_url)]
    stream: str = Field(default="WARDEN_AUDIT", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    subject: str = Field(default="warden.audit.records", pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    #: the durable pull consumer every writer process shares (each message goes to one of them)
    durable: str = Field(default="warden-audit-writers", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    #: a message not acknowledged within this long goes to another writer
    ack_wait_s: float = Field(default=30.0, gt=0)
    #: a record published twice within this long is stored once by the broker itself
    duplicate_window_s: float = Field(default=120.0, gt=0)
    #: how long a gateway waits for the broker's acknowledgements before it spools instead
    publish_timeout_s: float = Field(default=5.0, gt=0)
    connect_timeout_s: float = Field(default=2.0, gt=0)
