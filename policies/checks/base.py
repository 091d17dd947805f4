"""The one interface every check implements.

A check *reports*: it looks at text and says whether it fired, how strongly, and where.
What happens next (allow / flag / redact / block, enforce or monitor) is the policy's
decision, made in ``gateway.pipeline`` — never inside a check.

Two entry points:

* ``scan(text)`` — judge a finished piece of text (a prompt, an answer, a reasoning step).
* ``stream_matcher(context)`` — for checks that find *spans* (PII, secrets, patterns), a
  per-stream matcher that works on a growing buffer and says both which spans are
  complete and where a span that is still being written could begin, so the stream
  stage can hold back exactly that tail. Checks that judge whole texts return ``None``
  and cannot be used in the ``stream`` stage.

Checks are built once per policy version and shared by all requests, so they must keep
no per-request state; per-stream state lives in the object ``stream_matcher`` returns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeAlias, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict

from policies.engines.spans import Span as Span
from policies.engines.spans import StreamMatcher as StreamMatcher
from policies.engines.spans import StreamScan as StreamScan
from policies.roles import ALL_ROLES, Role

if TYPE_CHECKING:
    from policies.engines.patterns import Hit


#: a JSON value: what a check's ``detail`` holds, since it goes into the audit record as it is
JsonValue: TypeAlias = "str | int | float | bool | Sequence[JsonValue] | Mapping[str, JsonValue] | None"
#: a check's ``detail``: JSON values under names the check chooses
Detail: TypeAlias = Mapping[str, JsonValue]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What a check reports about one text. ``spans`` never carry the raw value."""

    fired: bool
    score: float = 0.0
    spans: tuple[Span, ...] = ()
    detail: Detail = field(default_factory=dict)

    @staticmethod
    def clean() -> CheckResult:
        return _CLEAN


_CLEAN = CheckResult(fired=False)


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a check judging the answer may know of its request: the operator's own
    instructions (system and developer messages, as the client sent them). Lives only as
    long as the request; nothing here is stored."""

    system_texts: tuple[str, ...] = ()


NO_CONTEXT = RequestContext()


def to_result(hits: Sequence[Hit], extra: Detail | None = None) -> CheckResult:
    """A ``CheckResult`` from a pattern engine's hits (``policies.engines.patterns``), naming the
    rules that fired (never the matched values)."""
    if not hits:
        return CheckResult(fired=False, detail=dict(extra or {}))
    entities: dict[str, int] = {}
    for hit in hits:
        entities[hit.span.entity_type] = entities.get(hit.span.entity_type, 0) + 1
    detail: dict[str, JsonValue] = {"entities": entities, "rules": sorted({h.rule for h in hits})}
    detail.update(extra or {})
    return CheckResult(
        fired=True,
        score=max(h.span.score for h in hits),
        spans=tuple(h.span for h in hits),
        detail=detail,
    )


class CheckOptions(BaseModel):
    """Base for a check's own options in the policy YAML. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


OptionsT = TypeVar("OptionsT", bound=CheckOptions)


class Check(ABC, Generic[OptionsT]):
    """Base class of all checks, generic over their options model.

    A check names its options model once, as the type argument: ``class PiiCheck(Check[PiiOptions])``
    gives ``PiiCheck.Options`` (what the policy schema validates a check entry against) and a
    typed ``self.options``. Subclasses set ``name``.
    """

    name: ClassVar[str]
    #: the options model, taken from the type argument (``Check[...]``) of the class or a base
    Options: ClassVar[type[CheckOptions]] = CheckOptions
    #: the entity type used for redaction when a span names none
    default_entity: ClassVar[str] = "REDACTED"
    #: the message roles this check reads in the input stage unless the policy says
    #: otherwise (``roles:``); see ``policies.roles``
    default_roles: ClassVar[frozenset[Role]] = ALL_ROLES

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):  # its own bases, not inherited ones
            origin = get_origin(base)
            if isinstance(origin, type) and issubclass(origin, Check):
                (argument,) = get_args(base)
                if isinstance(argument, type) and issubclass(argument, CheckOptions):
                    cls.Options = argument

    def __init__(self, options: OptionsT) -> None:
        if not isinstance(options, type(self).Options):
            # options of another model (the base one, say) are read as this check's own
            options = type(self).Options.model_validate(options.model_dump())  # type: ignore[assignment]
        self.options: OptionsT = options

    def for_response_format(self, response_format: Mapping[str, Any] | None) -> Check[Any] | None:
        """The check to run on an answer to a request with this ``response_format``: ``self``
        for most checks; a check that follows the request's format (``json_schema``) may give
        another instance, or ``None`` for nothing to check. Raises ``ValueError`` when the
        format it would follow is invalid."""
        return self

    @abstractmethod
    def scan(self, text: str) -> CheckResult:
        """Judge ``text``; must be thread-safe and keep no per-call state on ``self``."""

    def scan_messages(self, messages: Sequence[str]) -> CheckResult:
        """Judge a request's texts together (the input stage calls this); span offsets are
        into the texts joined by a blank line. Override to count messages (see ``length``)
        or to judge each text alone; such a result names the text that decided as
        ``detail["part"]`` (its index in ``messages``)."""
        return self.scan("\n\n".join(messages))

    def scan_answer(self, text: str, context: RequestContext) -> CheckResult:
        """Judge a finished answer knowing its request (``prompt_leak`` needs the system
        prompt); most checks need only the text."""
        return self.scan(text)

    def stream_matcher(self, context: RequestContext = NO_CONTEXT) -> StreamMatcher | None:
        """A fresh matcher for one stream of the request ``context`` describes, or ``None``
        if this check needs whole texts."""
        return None

    @classmethod
    def supports_stream(cls) -> bool:
        """Whether the check can run in the stream stage (it overrides ``stream_matcher``)."""
        return cls.stream_matcher is not Check.stream_matcher

    def warm(self) -> None:
        """Load models or data ahead of the first request (called off the request path)."""
