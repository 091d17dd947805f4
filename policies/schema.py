"""The policy file, as strict pydantic models: unknown keys anywhere are errors.

A check entry is written flat in YAML (``{check: pii, entities: [...], action: redact}``);
the keys every check shares (action, mode, allow, timeout_ms, on_error, name) are read
here and the rest is validated against that check's own ``Options`` model from the
registry, so a typo in a check's option is reported at its line like any other error.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import regex
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from audit.settings import AlertSettings
from policies.checks.base import CheckOptions
from policies.roles import Role


class Action(StrEnum):
    allow = "allow"
    flag = "flag"
    redact = "redact"
    block = "block"
    #: input checks only: a typed, keyed placeholder the answer is restored from
    #: (``gateway.pipeline.pseudonyms``)
    pseudonymize = "pseudonymize"


class Mode(StrEnum):
    enforce = "enforce"
    monitor = "monitor"


class OnError(StrEnum):
    """What a check that raises or times out counts as."""

    block = "block"
    flag = "flag"
    allow = "allow"


class OnBlock(StrEnum):
    error = "error"
    refusal = "refusal"


class StoreText(StrEnum):
    redacted = "redacted"
    full = "full"
    none = "none"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


COMMON_KEYS = frozenset(
    {
        "check",
        "validator",
        "name",
        "action",
        "mode",
        "allow",
        "exceptions",
        "timeout_ms",
        "on_error",
        "roles",
        "check_restored",
    }
)


def _compile_allow(entries: tuple[str, ...]) -> tuple[str, ...]:
    for entry in entries:
        if entry.startswith("re:"):
            try:
                regex.compile(entry[3:])
            except regex.error as exc:
                raise ValueError(f"allow pattern {entry!r} is not a valid regex: {exc}") from None
    return entries


class CheckException(Strict):
    """A false-positive fix that holds only for some requests: one tenant, one API key, or
    (input checks) text in some message roles. With ``allow`` only firings whose text an entry
    matches are let through (as the check's own ``allow``); without it every firing in the
    scope is. Every condition given must hold."""

    tenant: str | None = Field(default=None, min_length=1)
    key: str | None = Field(default=None, min_length=1)
    #: the message roles the firing came from (input checks only)
    roles: tuple[Role, ...] | None = Field(default=None, min_length=1)
    allow: tuple[str, ...] = ()
    #: why the exception exists (kept with the policy; not used to decide)
    reason: str = ""

    @field_validator("allow")
    @classmethod
    def _allow_patterns_compile(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        return _compile_allow(entries)

    @model_validator(mode="after")
    def _scoped(self) -> CheckException:
        if self.tenant is None and self.key is None and self.roles is None:
            raise ValueError(
                "an exception needs a scope: 'tenant', 'key' or 'roles' (for every request, use the check's 'allow')"
            )
        return self

    @property
    def scope(self) -> str:
        """The scope in words, for the audit detail and the dashboard: ``tenant=acme, key=k1``."""
        parts = [f"tenant={self.tenant}" if self.tenant else "", f"key={self.key}" if self.key else ""]
        parts.append(f"roles={','.join(self.roles)}" if self.roles else "")
        return ", ".join(p for p in parts if p)


class CheckSpec(Strict):
    check: str
    name: str = ""
    action: Action = Action.flag
    mode: Mode | None = None
    allow: tuple[str, ...] = ()
    #: false-positive fixes scoped to a tenant, a key or message roles (``CheckException``)
    exceptions: tuple[CheckException, ...] = ()
    timeout_ms: int | None = Field(default=None, gt=0, le=600_000)
    on_error: OnError | None = None
    #: the message roles an input check reads; unset: the check's own default
    roles: tuple[Role, ...] | None = Field(default=None, min_length=1)
    #: answer-side checks: also act on values restored from pseudonymized placeholders (the
    #: client's own values from the same request), which they otherwise leave alone
    check_restored: bool = False
    options: CheckOptions = Field(default_factory=CheckOptions)

    @field_validator("allow")
    @classmethod
    def _allow_patterns_compile(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        return _compile_allow(entries)

    @model_validator(mode="before")
    @classmethod
    def _split_options(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "validator" in data:
            if "check" in data:
                raise ValueError("give either 'check' or 'validator', not both")
            data["check"] = "validator"
            data["path"] = data.pop("validator")
        if "options" in data:
            raise ValueError("write a check's options beside 'check', not under 'options'")
        common = {k: v for k, v in data.items() if k in COMMON_KEYS}
        rest = {k: v for k, v in data.items() if k not in COMMON_KEYS}
        name = common.get("check")
        if not isinstance(name, str):
            return common  # the missing/invalid 'check' is reported by field validation
        from policies.registry import check_class  # late: the registry imports every check

        klass = check_class(name)
        if klass is None:
            from policies.registry import check_names

            raise ValueError(f"unknown check {name!r}; known checks: {', '.join(check_names())}")
        try:
            common["options"] = klass.Options.model_validate(rest)
        except ValidationError as exc:
            # Re-raise with locations relative to the check entry so yamlio finds the line.
            raise _OptionErrors(exc) from None
        common.setdefault("name", name)
        return common


class _OptionErrors(ValueError):
    def __init__(self, exc: ValidationError) -> None:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
        super().__init__("; ".join(parts))


def _no_pseudonymize(specs: tuple[CheckSpec, ...]) -> tuple[CheckSpec, ...]:
    for spec in specs:
        if spec.action is Action.pseudonymize:
            raise ValueError(
                f"check {spec.name or spec.check!r}: 'pseudonymize' applies to input checks only (it hides "
                "values from the model; the answer is restored by itself). Use redact or block for values "
                "the model writes"
            )
    return specs


class StreamStage(Strict):
    holdback_chars: int = Field(default=64, ge=1, le=65_536)
    checks: tuple[CheckSpec, ...] = ()

    @field_validator("checks")
    @classmethod
    def _stream_checks_do_not_pseudonymize(cls, specs: tuple[CheckSpec, ...]) -> tuple[CheckSpec, ...]:
        return _no_pseudonymize(specs)


class Constrain(Strict):
    system_prompt: str = ""


class AuditSettings(Strict):
    store_text: StoreText = StoreText.redacted


class Policy(Strict):
    name: str
    description: str = ""
    mode: Mode = Mode.enforce
    on_error: OnError = OnError.block
    on_block: OnBlock = OnBlock.error
    refusal_text: str = "I can't help with that request."
    constrain: Constrain = Field(default_factory=Constrain)
    input: tuple[CheckSpec, ...] = ()
    stream: StreamStage = Field(default_factory=StreamStage)
    output: tuple[CheckSpec, ...] = ()
    reasoning: tuple[CheckSpec, ...] = ()
    audit: AuditSettings = Field(default_factory=AuditSettings)
    #: webhook alerts on chosen verdicts (``audit.settings.AlertSettings``); off when absent
    alerts: AlertSettings | None = None

    #: content hash of the file this was loaded from; set by the loader
    _version: str = PrivateAttr(default="")

    @property
    def version(self) -> str:
        return self._version

    @model_validator(mode="after")
    def _roles_only_on_input(self) -> Policy:
        for stage, specs in (("stream", self.stream.checks), ("output", self.output), ("reasoning", self.reasoning)):
            for spec in specs:
                if spec.roles is not None:
                    raise ValueError(
                        f"{stage} check {spec.name or spec.check!r}: 'roles' applies to input checks only "
                        "(the other stages read the model's answer)"
                    )
                if any(e.roles is not None for e in spec.exceptions):
                    raise ValueError(
                        f"{stage} check {spec.name or spec.check!r}: an exception's 'roles' applies to input "
                        "checks only (the other stages read the model's answer); scope it by tenant or key"
                    )
        return self

    @field_validator("output", "reasoning")
    @classmethod
    def _answer_checks_do_not_pseudonymize(cls, specs: tuple[CheckSpec, ...]) -> tuple[CheckSpec, ...]:
        return _no_pseudonymize(specs)

    @field_validator("input")
    @classmethod
    def _input_pseudonymize_finds_values(cls, specs: tuple[CheckSpec, ...]) -> tuple[CheckSpec, ...]:
        from policies.registry import check_class

        for spec in specs:
            if spec.check_restored:
                raise ValueError(
                    f"check {spec.name or spec.check!r}: 'check_restored' applies to the answer-side stages "
                    "(stream, output, reasoning), where pseudonymized values are restored"
                )
            klass = check_class(spec.check)
            if spec.action is Action.pseudonymize and klass is not None and not klass.supports_stream():
                raise ValueError(
                    f"check {spec.name or spec.check!r}: 'pseudonymize' needs a check that finds values "
                    "(pii, secrets, regex, deny_terms); this one judges whole texts"
                )
        return specs

    @model_validator(mode="after")
    def _stream_checks_find_spans(self) -> Policy:
        from policies.registry import check_class

        for spec in self.stream.checks:
            klass = check_class(spec.check)
            if klass is not None and not klass.supports_stream():
                raise ValueError(
                    f"check {spec.check!r} judges whole texts and cannot run in the stream stage; put it under 'output'"
                )
        return self
