"""Prove a policy change before it is saved: known attacks and known benign prompts, before and after.

The labelled regression set is

* the shipped red-team sets (``gateway.redteam.shipped_sets()``: attacks and benign prompts),
* any JSONL the deployment adds (``text``, ``label`` 1/0, optional ``category``, ``id``; see
  ``dashboard.settings``: the ``redteam/`` folder beside the gateway config and
  ``WARDEN_DASHBOARD_REGRESSION_SETS``),
* every request a reviewer ruled on whose input stage acted: ``confirm`` is a known attack,
  ``false_positive`` known benign (the latest ruling counts; escalations are left out), sent as
  the tenant and key that sent it,
* the known attacks again as every tenant and key a scoped exception (``exceptions:``) of either
  version names, so an exception cannot let through from its scope what is blocked elsewhere.

Each prompt runs through the policy's real input stage with ``gateway.redteam.run_in_process``
(the gateway's own ``GuardSession``), under the running policy and under the edited one, so new
checks and new evidence in the engine are picked up without changes here. An outcome is
*blocked*, *flagged* or *passed*; a change **weakens** the policy when a known attack gets a
weaker outcome than under the running version (blocked -> flagged or passed, flagged ->
passed). A weakening change is saved only with an admin's written reason (``policy_files``).

The running policy's results are cached per (version, set), so a page that re-evaluates edits
only runs the edited policy again.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from gateway.redteam import Outcome, Prompt, load_prompts, run_in_process, shipped_sets
from policies.compiled import CompiledPolicy

#: outcome levels, weakest first
PASSED, FLAGGED, BLOCKED = 0, 1, 2
LEVEL_NAMES = ("passed", "flagged", "blocked")
RULED_SOURCE = "rulings"
_CACHE_MAX = 16


@dataclass(frozen=True, slots=True)
class RuledPrompt:
    """A reviewed request as a regression case (its stored, redacted input text)."""

    request_id: str
    ruling: str
    text: str
    #: the input checks that acted on it, in step order
    checks: tuple[str, ...]
    #: who sent it: it is replayed as the same tenant and key, so scoped exceptions apply as they would
    tenant: str = "redteam"
    key: str = "redteam"


def ruled_prompts(ruled: Iterable[RuledPrompt]) -> list[Prompt]:
    out = []
    for r in ruled:
        if r.ruling not in ("confirm", "false_positive") or not r.text.strip():
            continue
        label = 1 if r.ruling == "confirm" else 0
        check = r.checks[0] if r.checks else "input"
        out.append(Prompt(r.text, label, f"ruled {check}", r.request_id, RULED_SOURCE, tenant=r.tenant, key=r.key))
    return out


def deployment_sets(paths: Sequence[Path]) -> list[Path]:
    """The JSONL files among ``paths`` (folders are searched for ``*.jsonl``, sorted)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.glob("*.jsonl"))
        elif path.is_file():
            found.append(path)
    return found


def regression_set(extra: Sequence[Path], ruled: Iterable[RuledPrompt]) -> list[Prompt]:
    """Shipped sets, then the deployment's files, then the ruled requests. Raises ``ValueError``
    naming the file and line of a malformed JSONL row."""
    return [*load_prompts([*shipped_sets(), *deployment_sets(extra)]), *ruled_prompts(ruled)]


@dataclass(frozen=True, slots=True)
class CaseResult:
    prompt: Prompt
    before: int
    after: int
    fired_before: tuple[str, ...]
    fired_after: tuple[str, ...]

    @property
    def weakened(self) -> bool:
        return self.prompt.label == 1 and self.after < self.before

    @property
    def strengthened(self) -> bool:
        return self.prompt.label == 1 and self.after > self.before


@dataclass(frozen=True, slots=True)
class GroupRow:
    """Attacks blocked (and at least flagged) and benign passed, before -> after, for one group."""

    group: str
    attacks: int
    blocked_before: int
    blocked_after: int
    caught_before: int
    caught_after: int
    benign: int
    passed_before: int
    passed_after: int


@dataclass(frozen=True, slots=True)
class CheckRow:
    """How often one check acted on known attacks and on known benign prompts, before -> after."""

    check: str
    on_attacks_before: int
    on_attacks_after: int
    on_benign_before: int
    on_benign_after: int


@dataclass(frozen=True, slots=True)
class Evaluation:
    running_version: str
    edited_version: str
    cases: tuple[CaseResult, ...]

    @property
    def weakened(self) -> list[CaseResult]:
        """Known attacks the edit lets through (or no longer flags) that the running version caught."""
        return [c for c in self.cases if c.weakened]

    @property
    def weakens(self) -> bool:
        return any(c.weakened for c in self.cases)

    @property
    def benign_fixed(self) -> list[CaseResult]:
        return [c for c in self.cases if c.prompt.label == 0 and c.after < c.before]

    @property
    def benign_broken(self) -> list[CaseResult]:
        return [c for c in self.cases if c.prompt.label == 0 and c.after > c.before]

    def by_category(self) -> list[GroupRow]:
        groups: dict[str, list[CaseResult]] = defaultdict(list)
        for c in self.cases:
            groups[c.prompt.category].append(c)
        rows = [_group(name, cases) for name, cases in sorted(groups.items())]
        return [*rows, _group("all", list(self.cases))]

    def by_check(self) -> list[CheckRow]:
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for c in self.cases:
            base = 0 if c.prompt.label else 2
            for name in set(c.fired_before):
                counts[name][base] += 1
            for name in set(c.fired_after):
                counts[name][base + 1] += 1
        return [CheckRow(name, *v) for name, v in sorted(counts.items())]

    def summary(self) -> dict[str, Any]:
        """What is kept with a saved version (and shown in the audit trail), as plain JSON."""
        return {
            "running_version": self.running_version,
            "edited_version": self.edited_version,
            "cases": len(self.cases),
            "categories": [asdict(r) for r in self.by_category()],
            "checks": [asdict(r) for r in self.by_check()],
            "weakened": [_case_json(c) for c in self.weakened],
            "benign_fixed": [c.prompt.id for c in self.benign_fixed],
            "benign_broken": [c.prompt.id for c in self.benign_broken],
        }


def _case_json(c: CaseResult) -> dict[str, Any]:
    return {
        "id": c.prompt.id,
        "category": c.prompt.category,
        "source": c.prompt.source,
        "before": LEVEL_NAMES[c.before],
        "after": LEVEL_NAMES[c.after],
    }


def _group(name: str, cases: Sequence[CaseResult]) -> GroupRow:
    attacks = [c for c in cases if c.prompt.label == 1]
    benign = [c for c in cases if c.prompt.label == 0]
    return GroupRow(
        name,
        len(attacks),
        sum(c.before == BLOCKED for c in attacks),
        sum(c.after == BLOCKED for c in attacks),
        sum(c.before >= FLAGGED for c in attacks),
        sum(c.after >= FLAGGED for c in attacks),
        len(benign),
        sum(c.before < BLOCKED for c in benign),
        sum(c.after < BLOCKED for c in benign),
    )


def _level(o: Outcome) -> int:
    return BLOCKED if o.blocked else FLAGGED if o.flagged else PASSED


def _digest(prompts: Sequence[Prompt]) -> str:
    h = hashlib.sha256()
    for p in prompts:
        h.update(f"{p.id}\x00{p.label}\x00{p.text}\x01".encode())
    return h.hexdigest()


_cache: OrderedDict[tuple[str, str], list[Outcome]] = OrderedDict()
_cache_lock = threading.Lock()


def run(policy: CompiledPolicy, prompts: Sequence[Prompt]) -> list[Outcome]:
    """The input stage's outcome for every prompt (cached per policy version and prompt set)."""
    key = (policy.version, _digest(prompts))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    # Streamlit runs a page in a thread without an event loop, so this owns one for the run.
    outcomes = asyncio.run(run_in_process(policy, prompts))
    with _cache_lock:
        _cache[key] = outcomes
        while len(_cache) > _CACHE_MAX:
            _cache.popitem(last=False)
    return outcomes


def exception_scopes(*policies: CompiledPolicy) -> list[tuple[str | None, str | None]]:
    """The (tenant, key) scopes of the policies' exceptions, in order, without repeats
    (role-only exceptions need no scope of their own: the set already has user and tool prompts)."""
    found: dict[tuple[str | None, str | None], None] = {}
    for policy in policies:
        for bound in policy.checks:
            for e in bound.exceptions:
                if e.tenant is not None or e.key is not None:
                    found[(e.tenant, e.key)] = None
    return list(found)


def scoped_attacks(prompts: Sequence[Prompt], scopes: Sequence[tuple[str | None, str | None]]) -> list[Prompt]:
    """The known attacks again, sent as each exception's tenant and key: an exception must not let
    through from its tenant or key what the policy blocks from everyone else."""
    out = []
    for tenant, key in scopes:
        label = ", ".join(p for p in (f"tenant={tenant}" if tenant else "", f"key={key}" if key else "") if p)
        for p in prompts:
            if p.label == 1 and p.source != RULED_SOURCE:
                out.append(
                    replace(
                        p,
                        id=f"{p.id}@{label}",
                        category=f"{p.category} ({label})",
                        tenant=tenant or p.tenant,
                        key=key or p.key,
                    )
                )
    return out


def evaluate(edited: CompiledPolicy, running: CompiledPolicy, prompts: Sequence[Prompt]) -> Evaluation:
    """Both versions on ``prompts``, plus the known attacks as every tenant and key an exception of
    either version names (``scoped_attacks``)."""
    prompts = [*prompts, *scoped_attacks(prompts, exception_scopes(running, edited))]
    before = run(running, prompts)
    after = run(edited, prompts)
    cases = tuple(
        CaseResult(p, _level(b), _level(a), tuple(b.fired), tuple(a.fired))
        for p, b, a in zip(prompts, before, after, strict=True)
    )
    return Evaluation(running.version, edited.version, cases)
