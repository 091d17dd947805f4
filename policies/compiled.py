"""A policy ready to run: every check entry built once and bound to its effective settings.

Built per policy *version* and shared by all requests under it; holds no request state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import regex

from policies.checks.base import Check, Span
from policies.registry import check_class
from policies.roles import Role
from policies.schema import Action, CheckSpec, Mode, OnError, Policy


@dataclass(frozen=True, slots=True)
class AllowList:
    """Reviewers' false-positive fixes: plain terms (case-insensitive) or ``re:`` patterns.

    A span is allowed when an entry matches text that covers it, so ``allow: ["kill a
    Python process"]`` lets "kill" through in that phrase only; a whole-text verdict is
    allowed when an entry occurs anywhere in the text.
    """

    patterns: tuple[regex.Pattern[str], ...] = ()

    @staticmethod
    def build(entries: tuple[str, ...]) -> AllowList:
        return AllowList(
            tuple(regex.compile(e[3:] if e.startswith("re:") else regex.escape(e), regex.IGNORECASE) for e in entries)
        )

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def allows_span(self, text: str, start: int, end: int) -> bool:
        for p in self.patterns:
            for m in p.finditer(text, max(0, start - 256), min(len(text), end + 256)):
                if m.start() <= start and m.end() >= end:
                    return True
        return False

    def allows_text(self, text: str) -> bool:
        return any(p.search(text) for p in self.patterns)


@dataclass(frozen=True, slots=True)
class BoundException:
    """A check's exception (``CheckException``), ready to match: a scope and its allow list
    (empty: every firing in the scope is let through)."""

    scope: str
    tenant: str | None
    key: str | None
    roles: frozenset[Role] | None
    allow: AllowList

    def matches(self, tenant: str, key_id: str, role: str | None) -> bool:
        return (
            (self.tenant is None or self.tenant == tenant)
            and (self.key is None or self.key == key_id)
            and (self.roles is None or role in self.roles)
        )


@dataclass(frozen=True, slots=True)
class BoundCheck:
    spec: CheckSpec
    check: Check[Any]
    mode: Mode
    on_error: OnError
    allow: AllowList
    exceptions: tuple[BoundException, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name or self.spec.check

    @property
    def action(self) -> Action:
        return self.spec.action

    @property
    def roles(self) -> frozenset[Role]:
        """The message roles this check reads in the input stage."""
        return frozenset(self.spec.roles) if self.spec.roles is not None else self.check.default_roles

    @property
    def enforced(self) -> bool:
        return self.mode is Mode.enforce

    @property
    def changes_text(self) -> bool:
        """Whether this check may alter or stop what the client gets (so streams must wait for it)."""
        return self.enforced and self.action in (Action.redact, Action.block)

    def entity_of(self, span: Span) -> str:
        return span.entity_type or self.check.default_entity


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    policy: Policy
    version: str
    source: str
    input: tuple[BoundCheck, ...]
    stream: tuple[BoundCheck, ...]
    output: tuple[BoundCheck, ...]
    reasoning: tuple[BoundCheck, ...]
    holdback_chars: int
    checks: tuple[BoundCheck, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.policy.name

    def warm(self) -> None:
        for bound in self.checks:
            bound.check.warm()


def policy_version(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def bind(policy: Policy, spec: CheckSpec) -> BoundCheck:
    klass = check_class(spec.check)
    if klass is None:  # schema validation already rejects this; kept for direct callers
        raise ValueError(f"unknown check {spec.check!r}")
    mode = Mode.monitor if Mode.monitor in (policy.mode, spec.mode) else Mode.enforce
    return BoundCheck(
        spec=spec,
        check=klass(spec.options),
        mode=mode,
        on_error=spec.on_error or policy.on_error,
        allow=AllowList.build(spec.allow),
        exceptions=tuple(
            BoundException(
                e.scope,
                e.tenant,
                e.key,
                frozenset(e.roles) if e.roles is not None else None,
                AllowList.build(e.allow),
            )
            for e in spec.exceptions
        ),
    )


def compile_policy(policy: Policy, text: str, source: str) -> CompiledPolicy:
    stages = {
        name: tuple(bind(policy, s) for s in specs)
        for name, specs in (
            ("input", policy.input),
            ("stream", policy.stream.checks),
            ("output", policy.output),
            ("reasoning", policy.reasoning),
        )
    }
    return CompiledPolicy(
        policy=policy,
        version=policy_version(text),
        source=source,
        holdback_chars=policy.stream.holdback_chars,
        checks=tuple(b for group in stages.values() for b in group),
        **stages,
    )
