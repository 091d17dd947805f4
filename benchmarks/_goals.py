"""The performance targets of the gateway issue ("How fast"), judged on one benchmark run.

A target whose inputs were not measured (a variant skipped or failed) is reported as such,
never as met.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from benchmarks._loadgen import LoadResult
from benchmarks._results import BenchResult, RunKey
from benchmarks._variants import REPLY_TOKENS

DEFAULT = "warden-default"
DEFAULT_LITELLM = "warden-default-litellm"


@dataclass(frozen=True)
class Goal:
    name: str
    target: str
    measured: float | None
    unit: str
    met: bool | None


def _figure(result: BenchResult, variant: str, key: RunKey, pick: Callable[[LoadResult], float | None]) -> float | None:
    run = result.run(variant, key)
    return None if run is None or run.completed == 0 else pick(run)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _goal(name: str, target: str, measured: float | None, unit: str, ok: Callable[[float], bool]) -> Goal:
    return Goal(name, target, measured, unit, None if measured is None else ok(measured))


def judge(result: BenchResult) -> list[Goal]:
    streamed = RunKey("streamed", result.settings.concurrency)
    streamed1, plain1 = RunKey("streamed", 1), RunKey("plain", 1)

    def rps(variant: str, key: RunKey) -> float | None:
        return _figure(result, variant, key, lambda r: r.requests_per_s)

    def p50(variant: str, key: RunKey) -> float | None:
        return _figure(result, variant, key, lambda r: r.p50_ms)

    def ttft(variant: str, key: RunKey) -> float | None:
        return _figure(result, variant, key, lambda r: r.ttft_p50_ms)

    # Per request, the gateway's serial cost is about 1/throughput when it is the bottleneck; the
    # difference against the empty policy, per reply token, estimates what the checks cost per token.
    def per_token_us() -> float | None:
        slow, fast = rps(DEFAULT, streamed), rps("warden-empty", streamed)
        if not slow or not fast:
            return None
        return (1 / slow - 1 / fast) / REPLY_TOKENS * 1e6

    return [
        _goal(
            "streamed req/s, default policy vs LiteLLM Proxy",
            ">= 10x",
            _ratio(rps(DEFAULT, streamed), rps("litellm-proxy", streamed)),
            "x",
            lambda v: v >= 10,
        ),
        _goal(
            "streamed req/s, default policy vs direct upstream",
            ">= 0.40x",
            _ratio(rps(DEFAULT, streamed), rps("direct", streamed)),
            "x",
            lambda v: v >= 0.4,
        ),
        _goal(
            "checks' cost per streamed token, default vs empty (estimate)",
            "<= 20 us",
            per_token_us(),
            "us",
            lambda v: v <= 20,
        ),
        # Judged against 5 ms with no allowance: the hold-back wait cannot be told apart from outside.
        _goal(
            "added TTFT p50 one at a time, default policy",
            "<= 5 ms + hold-back",
            _diff(ttft(DEFAULT, streamed1), ttft("direct", streamed1)),
            "ms",
            lambda v: v <= 5,
        ),
        _goal(
            "added p50 non-streamed one at a time, regex-only policy",
            "<= 3 ms",
            _diff(p50("warden-regex", plain1), p50("direct", plain1)),
            "ms",
            lambda v: v <= 3,
        ),
        _goal(
            "added p50 non-streamed one at a time, default policy (PII NER)",
            "<= 15 ms",
            _diff(p50(DEFAULT, plain1), p50("direct", plain1)),
            "ms",
            lambda v: v <= 15,
        ),
        *(goal for name in (DEFAULT, DEFAULT_LITELLM) for goal in _process_goals(result, name)),
    ]


def _process_goals(result: BenchResult, name: str) -> list[Goal]:
    variant = result.variant(name)
    label = variant.label if variant else name
    startup = variant.startup if variant else None
    return [
        _goal(f"{label}: peak RSS", "< 300 MiB", variant.peak_rss_mib if variant else None, "MiB", lambda v: v < 300),
        _goal(
            f"{label}: start to first chat completion",
            "<= 3 s",
            startup.first_completion_s if startup else None,
            "s",
            lambda v: v <= 3,
        ),
    ]
