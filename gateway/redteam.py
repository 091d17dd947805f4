"""``warden redteam``: run attack and benign prompt sets through a policy, score the result.

In process, each prompt goes through the policy's real input stage (``GuardSession``),
exactly as a gateway request would; against a URL, through a running gateway's
``/v1/chat/completions`` with a client key. A row may set ``role: tool`` (the text is a tool
result the model reads, for indirect injection) and ``system`` (the operator's system prompt
sent with it) (a 400 ``content_policy_violation`` or a
``content_filter`` refusal counts as blocked). The scorecard says, per category and per
check: blocked attacks, missed attacks, benign prompts blocked (false positives), flags,
and which checks were slowest.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from audit.record import Stage, Verdict
from gateway.errors import CheckUnavailable, PolicyBlocked
from gateway.pipeline.segments import chat_segments
from gateway.pipeline.session import GuardSession, new_request_id
from policies.compiled import CompiledPolicy

SHIPPED = Path(__file__).resolve().parent.parent / "policies" / "redteam"
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Prompt:
    text: str
    label: int  # 1 = attack, 0 = benign
    category: str
    id: str
    source: str
    #: where the text sits: ``user`` (a user turn) or ``tool`` (a tool result the model reads)
    role: str = "user"
    #: the operator's system prompt sent with it, if any
    system: str | None = None
    #: who sends it (a policy's scoped exceptions depend on the tenant and API key)
    tenant: str = "redteam"
    key: str = "redteam"

    def messages(self) -> list[dict[str, Any]]:
        """The chat messages that carry the prompt as a real application would send it."""
        out: list[dict[str, Any]] = [{"role": "system", "content": self.system}] if self.system else []
        if self.role != "tool":
            return [*out, {"role": "user", "content": self.text}]
        call = {"id": "call_1", "type": "function", "function": {"name": "fetch", "arguments": "{}"}}
        return [
            *out,
            {"role": "user", "content": "Please look this up and summarise it for me."},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": self.text},
        ]


@dataclass(slots=True)
class Outcome:
    prompt: Prompt
    blocked: bool
    flagged: bool
    error: str | None = None
    fired: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    check_ms: dict[str, float] = field(default_factory=dict)


def load_prompts(paths: Sequence[Path]) -> list[Prompt]:
    """JSONL rows with ``text`` and ``label`` (1 attack / 0 benign), optional ``category`` and ``id``."""
    prompts: list[Prompt] = []
    for path in paths:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text, label = str(row["text"]), int(row["label"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: each line needs 'text' and 'label' (0 or 1): {exc}") from None
            if label not in (0, 1):
                raise ValueError(f"{path}:{n}: label must be 0 or 1")
            category = str(row.get("category") or ("attack" if label else "benign"))
            role = str(row.get("role") or "user")
            if role not in ("user", "tool"):
                raise ValueError(f"{path}:{n}: role must be 'user' or 'tool'")
            system = row.get("system")
            prompts.append(
                Prompt(
                    text,
                    label,
                    category,
                    str(row.get("id") or f"{path.stem}-{n}"),
                    path.name,
                    role,
                    str(system) if system else None,
                )
            )
    return prompts


def shipped_sets() -> list[Path]:
    return [SHIPPED / "attacks.jsonl", SHIPPED / "benign.jsonl"]


async def _one_in_process(policy: CompiledPolicy, prompt: Prompt) -> Outcome:
    session = GuardSession.start(
        policy,
        request_id=new_request_id(),
        tenant=prompt.tenant,
        key_id=prompt.key,
        endpoint="/v1/chat/completions",
        model="redteam",
        stream=False,
    )
    body = {"messages": prompt.messages()}
    started = time.perf_counter()
    blocked, error = False, None
    try:
        decision = await session.check_input(chat_segments(body), constrain=None)
        blocked = decision.refusal is not None
    except PolicyBlocked:
        blocked = True
    except CheckUnavailable as exc:
        blocked, error = True, exc.message
    steps = [s for s in session.record.steps if s.stage is Stage.input and s.name != "constrain"]
    return Outcome(
        prompt,
        blocked=blocked,
        flagged=any(s.verdict is Verdict.flag for s in steps),
        error=error,
        fired=[s.name for s in steps if s.verdict is not Verdict.passed],
        latency_ms=(time.perf_counter() - started) * 1000,
        check_ms={s.name: s.latency_ms for s in steps},
    )


async def run_in_process(
    policy: CompiledPolicy, prompts: Iterable[Prompt], progress: Progress | None = None
) -> list[Outcome]:
    policy.warm()
    out = []
    for i, prompt in enumerate(prompts, 1):
        out.append(await _one_in_process(policy, prompt))
        if progress:
            progress(i)
    return out


async def run_against_url(
    url: str, key: str, model: str, prompts: Iterable[Prompt], progress: Progress | None = None, concurrency: int = 4
) -> list[Outcome]:
    limit = asyncio.Semaphore(concurrency)
    done = 0

    async def one(client: httpx.AsyncClient, prompt: Prompt) -> Outcome:
        nonlocal done
        async with limit:
            started = time.perf_counter()
            r = await client.post("/chat/completions", json={"model": model, "messages": prompt.messages()})
            ms = (time.perf_counter() - started) * 1000
        done += 1
        if progress:
            progress(done)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if r.status_code == 400 and body.get("error", {}).get("code") == "content_policy_violation":
            check = str(body.get("warden", {}).get("check") or "policy")
            return Outcome(prompt, blocked=True, flagged=False, fired=[check], latency_ms=ms)
        if r.status_code != 200:
            return Outcome(prompt, blocked=False, flagged=False, error=f"HTTP {r.status_code}", latency_ms=ms)
        finish = (body.get("choices") or [{}])[0].get("finish_reason")
        return Outcome(prompt, blocked=finish == "content_filter", flagged=False, latency_ms=ms)

    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=120) as client:
        return list(await asyncio.gather(*(one(client, p) for p in prompts)))


@dataclass(slots=True)
class Tally:
    attacks: int = 0
    blocked: int = 0
    missed: int = 0
    benign: int = 0
    false_positives: int = 0
    flagged: int = 0
    #: attacks blocked or at least flagged for review
    detected: int = 0
    errors: int = 0

    def add(self, o: Outcome) -> None:
        if o.prompt.label:
            self.attacks += 1
            self.blocked += o.blocked
            self.missed += not o.blocked
            self.detected += o.blocked or o.flagged
        else:
            self.benign += 1
            self.false_positives += o.blocked
        self.flagged += o.flagged
        self.errors += o.error is not None

    @property
    def block_rate(self) -> float:
        return self.blocked / self.attacks if self.attacks else 0.0

    @property
    def false_positive_rate(self) -> float:
        return self.false_positives / self.benign if self.benign else 0.0


@dataclass(slots=True)
class Scorecard:
    total: Tally
    categories: dict[str, Tally]
    checks: dict[str, dict[str, int]]
    slowest: list[tuple[str, float, float]]  # check, mean ms, max ms
    missed: list[str]
    false_positives: list[str]

    def to_json(self) -> dict[str, Any]:
        def tally(t: Tally) -> dict[str, Any]:
            return {
                **asdict(t),
                "block_rate": round(t.block_rate, 4),
                "false_positive_rate": round(t.false_positive_rate, 4),
            }

        return {
            "total": tally(self.total),
            "categories": {k: tally(v) for k, v in self.categories.items()},
            "checks": self.checks,
            "slowest_checks": [{"check": c, "mean_ms": m, "max_ms": x} for c, m, x in self.slowest],
            "missed": self.missed,
            "false_positives": self.false_positives,
        }


def score(outcomes: Sequence[Outcome]) -> Scorecard:
    total: Tally = Tally()
    categories: defaultdict[str, Tally] = defaultdict(Tally)
    checks: dict[str, dict[str, int]] = defaultdict(lambda: {"on_attacks": 0, "on_benign": 0})
    timings: dict[str, list[float]] = defaultdict(list)
    for o in outcomes:
        total.add(o)
        categories[o.prompt.category].add(o)
        for name in set(o.fired):
            checks[name]["on_attacks" if o.prompt.label else "on_benign"] += 1
        for name, ms in o.check_ms.items():
            timings[name].append(ms)
    slowest = sorted(
        ((n, round(sum(v) / len(v), 3), round(max(v), 3)) for n, v in timings.items()), key=lambda t: -t[1]
    )
    return Scorecard(
        total=total,
        categories=dict(sorted(categories.items())),
        checks=dict(sorted(checks.items())),
        slowest=slowest[:5],
        missed=[o.prompt.id for o in outcomes if o.prompt.label and not o.blocked],
        false_positives=[o.prompt.id for o in outcomes if not o.prompt.label and o.blocked],
    )
