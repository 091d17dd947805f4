"""The one module that imports guardrails-ai, in both directions.

* Warden checks as guardrails validators: every check of ``policies.registry`` is a
  ``Validator`` registered as ``warden/<check>``, built from the check's own options, so
  ``Guard().use(WardenPii(entities=["EMAIL_ADDRESS"], on_fail="fix"))`` works; ``fix`` masks
  the spans as ``<ENTITY_TYPE>``. The classes are made on first use (``WardenPii``,
  ``WardenStepVerifier``... are importable from here) or all at once by ``register_all``.
* Guardrails validators as Warden checks: ``load_validator_class`` / ``build_validator`` /
  ``run_validator`` back the ``validator`` check (``policies.checks.validator``).

Importing guardrails takes seconds, so nothing else imports it and nothing imports this
module unless a policy names a ``validator`` or a user wants the classes.

Offline, always: importing this module first calls ``ensure_offline``. Guardrails ships
anonymous usage spans to its hub (an OTLP exporter in ``HubTelemetry``) when
``settings.rc.enable_metrics`` is true, which is its default without a ``~/.guardrailsrc``,
and every ``Guard()`` re-reads that file (``Guard._load_rc``), so setting the flag once is
not enough. We therefore (1) force ``enable_metrics`` and ``use_remote_inferencing`` off in
every RC that ``RC.load`` returns, now and later; (2) install an inert ``HubTelemetry``
singleton with no tracer and no exporter, so no span can be made or shipped even if a caller
passes ``allow_metrics_collection=True``; (3) set ``settings.disable_tracing`` so guardrails
does not write its spans, which carry validated text, into Warden's own OpenTelemetry
pipeline; (4) set ``settings.use_server = False`` so a ``Guard`` never calls a Guardrails
server. Validators run locally unless a policy names an explicit ``validation_endpoint``.
"""

from __future__ import annotations

import importlib
import inspect
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from guardrails.classes.rc import RC
from guardrails.settings import settings
from guardrails.utils.hub_telemetry_utils import HubTelemetry
from guardrails.validator_base import (
    ErrorSpan,
    FailResult,
    PassResult,
    Validator,
    register_validator,
    validators_registry,
)

from policies.checks.base import Check, CheckResult, Span
from policies.registry import BUILTIN_CHECKS, check_class

#: registry entries that cannot be offered as guardrails validators, and why
NOT_WRAPPED = {"validator": "it already is a guardrails validator"}

_lock = threading.Lock()
_offline = False
_classes: dict[str, type[Any]] = {}
_original_rc_load = RC.load.__func__


def ensure_offline() -> None:
    """Switch off guardrails' metrics, hub telemetry, tracing and remote inference (idempotent)."""
    global _offline
    with _lock:
        if not _offline:
            RC.load = classmethod(_load_rc_offline)
            _offline = True
        _install_inert_hub_telemetry()
        _force_off(settings.rc)
        settings.disable_tracing = True
        settings.use_server = False


def _load_rc_offline(cls: type[Any], logger: Any = None) -> Any:
    return _force_off(_original_rc_load(cls, logger))


def _force_off(rc: Any) -> Any:
    rc.enable_metrics = False
    rc.use_remote_inferencing = False
    return rc


def _install_inert_hub_telemetry() -> None:
    hub = HubTelemetry._instance
    if hub is None:
        # Bypass __new__: it would build a TracerProvider with an OTLP exporter to the hub.
        hub = object.__new__(HubTelemetry)
        hub._carrier = {}
        hub._tracer_provider = None
        hub._processor = None
        HubTelemetry._instance = hub
    hub._enabled = False
    hub._tracer = None  # every hub trace wrapper checks this before making a span
    hub._prop = None


def telemetry_state() -> dict[str, Any]:
    """What guardrails would do now; for tests and ``warden`` diagnostics."""
    hub = HubTelemetry._instance
    return {
        "enable_metrics": settings.rc.enable_metrics,
        "use_remote_inferencing": settings.rc.use_remote_inferencing,
        "disable_tracing": settings.disable_tracing,
        "use_server": settings.use_server,
        "hub_enabled": bool(hub is not None and hub._enabled),
        "hub_tracer": hub is not None and hub._tracer is not None,
        "hub_exporter": hub is not None and hub._processor is not None,
    }


ensure_offline()


# --- Warden checks as guardrails validators ---------------------------------------------------


def validator_class_name(check: str) -> str:
    return "Warden" + "".join(part.capitalize() for part in check.split("_"))


def warden_validator(check: str) -> type[Any]:
    """The registered ``Validator`` subclass for one Warden check (made once)."""
    with _lock:
        made = _classes.get(check)
        if made is None:
            if check in NOT_WRAPPED:
                raise ValueError(f"check {check!r} is not offered as a validator: {NOT_WRAPPED[check]}")
            klass = check_class(check)
            if klass is None:
                raise KeyError(f"unknown check {check!r}")
            made = _classes[check] = _make_validator(check, klass)
        return made


def register_all() -> dict[str, type[Any]]:
    """Every wrappable registry check as a registered validator; import errors propagate."""
    return {name: warden_validator(name) for name in sorted(BUILTIN_CHECKS) if name not in NOT_WRAPPED}


def _make_validator(check: str, klass: type[Check[Any]]) -> type[Any]:
    class WardenValidator(Validator):  # type: ignore[misc]
        warden_check: ClassVar[type[Check[Any]]] = klass

        def __init__(self, on_fail: Any = None, **options: Any) -> None:
            # Options first: a typo is a pydantic error naming the option, as in a policy file.
            built = klass(klass.Options.model_validate(options))
            super().__init__(on_fail=on_fail, **options)
            self.warden = built

        def _validate(self, value: Any, metadata: dict[str, Any]) -> Any:
            text = value if isinstance(value, str) else str(value)
            return to_validation_result(self.warden.scan(text), text, check)

    name = validator_class_name(check)
    WardenValidator.__name__ = WardenValidator.__qualname__ = name
    WardenValidator.__module__ = __name__
    WardenValidator.__doc__ = f"Warden's ``{check}`` check as a guardrails validator.\n\n{klass.__doc__ or ''}"
    registered: type[Any] = register_validator(name=f"warden/{check}", data_type="string")(WardenValidator)
    return registered


def to_validation_result(result: CheckResult, text: str, check: str) -> Any:
    """A Warden result as guardrails sees it; ``fix_value`` masks spans as ``<ENTITY_TYPE>``."""
    if not result.fired:
        return PassResult()
    spans = merge_spans(result.spans)
    reason = result.detail.get("reason")
    message = f"warden/{check} fired" + (f": {reason}" if isinstance(reason, str) else "")
    return FailResult(
        error_message=message,
        fix_value=redact(text, spans) if spans else None,
        error_spans=[ErrorSpan(start=s.start, end=s.end, reason=s.entity_type) for s in spans] or None,
        metadata={"score": result.score, "detail": dict(result.detail)},
    )


def merge_spans(spans: Sequence[Span]) -> list[Span]:
    """Sorted, with overlaps joined (the earlier span's entity type names the union)."""
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            merged[-1] = Span(last.start, max(last.end, span.end), last.entity_type, max(last.score, span.score))
        else:
            merged.append(span)
    return merged


def redact(text: str, spans: Sequence[Span]) -> str:
    out, pos = [], 0
    for span in merge_spans(spans):
        out.append(text[pos : span.start])
        out.append(f"<{span.entity_type}>")
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


def __getattr__(name: str) -> type[Any]:
    """``from policies.guardrails_adapter import WardenPii`` makes the class on first use."""
    for check in BUILTIN_CHECKS:
        if check not in NOT_WRAPPED and validator_class_name(check) == name:
            return warden_validator(check)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- guardrails validators as Warden checks ---------------------------------------------------


def load_validator_class(path: str) -> type[Any]:
    """Import ``package.module.ClassName`` (or ``package.module:ClassName``); must be a Validator."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{path!r}: give an import path like 'package.module.ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from None
    klass = getattr(module, attr, None)
    if klass is None:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
    if not (isinstance(klass, type) and issubclass(klass, Validator)):
        raise ValueError(f"{path!r} is not a guardrails Validator subclass")
    return klass


def check_validator_args(klass: type[Any], args: Mapping[str, Any]) -> None:
    """Reject arguments the class cannot take, and the ones the policy owns."""
    if getattr(klass, "rail_alias", "") not in validators_registry:
        raise ValueError(f"{klass.__name__} is not registered: decorate it with @register_validator")
    if "on_fail" in args:
        raise ValueError("remove 'on_fail' from args: the policy's 'action' decides what happens")
    if args.get("use_local") is False and not args.get("validation_endpoint"):
        raise ValueError("use_local: false would send text to the Guardrails Hub; give a validation_endpoint")
    try:
        inspect.signature(klass).bind(**args)
    except TypeError as exc:
        raise ValueError(f"{klass.__name__} arguments: {exc}") from None


def build_validator(klass: type[Any], args: Mapping[str, Any]) -> Any:
    ensure_offline()
    return klass(on_fail="noop", **args)


def entity_type_of(validator: Any) -> str:
    """``guardrails/regex_match`` -> ``REGEX_MATCH``; the class name when unregistered."""
    alias = str(getattr(validator, "rail_alias", "") or type(validator).__name__)
    name = alias.rsplit("/", 1)[-1]
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"\W+", "_", name).strip("_").upper() or "VALIDATOR"


def run_validator(validator: Any, text: str, metadata: Mapping[str, Any]) -> CheckResult:
    """Call ``validate`` directly (a ``Guard`` adds ~2 ms) and map its result to a CheckResult."""
    result = validator.validate(text, dict(metadata))
    if isinstance(result, FailResult):
        entity = entity_type_of(validator)
        error_spans = result.error_spans or []
        spans = tuple(Span(max(0, s.start), min(len(text), s.end), entity) for s in error_spans if s.end > s.start)
        detail: dict[str, Any] = {"validator": str(validator.rail_alias), "error": result.error_message}
        if error_spans:
            detail["reasons"] = sorted({s.reason for s in error_spans})
        if result.fix_value is not None:
            detail["fix_value"] = _jsonable(result.fix_value)
        return CheckResult(fired=True, score=1.0, spans=spans, detail=detail)
    if not isinstance(result, PassResult):
        raise TypeError(f"{type(validator).__name__}.validate returned {type(result).__name__}")
    override = result.value_override
    if override is not PassResult.ValueOverrideSentinel:
        return CheckResult(fired=False, detail={"value_override": _jsonable(override)})
    return CheckResult.clean()


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)
