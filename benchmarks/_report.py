"""Printing the load benchmark's tables, and writing its figures as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from benchmarks._goals import Goal
from benchmarks._loadgen import LoadResult
from benchmarks._results import BenchResult, RunKey

LABEL_WIDTH = 32
Column = tuple[str, int, Callable[[str, LoadResult], float | None], str]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _row(label: str, cells: Sequence[tuple[str, int]]) -> str:
    return label.ljust(LABEL_WIDTH) + "".join(text.rjust(width) for text, width in cells)


def _columns(result: BenchResult, key: RunKey) -> list[Column]:
    def base(name: str) -> LoadResult | None:
        return result.run(name, key)

    def ratio(name: str) -> Callable[[str, LoadResult], float | None]:
        def pick(_: str, run: LoadResult) -> float | None:
            other = base(name)
            return run.requests_per_s / other.requests_per_s if other and other.requests_per_s else None

        return pick

    def added(pick: Callable[[LoadResult], float | None]) -> Callable[[str, LoadResult], float | None]:
        def diff(_: str, run: LoadResult) -> float | None:
            direct = base("direct")
            mine, theirs = pick(run), (pick(direct) if direct else None)
            return None if mine is None or theirs is None else mine - theirs

        return diff

    columns: list[Column] = [
        ("req/s", 9, lambda _, r: r.requests_per_s, ".1f"),
        ("vs direct", 11, ratio("direct"), ".2f"),
        ("vs LiteLLM", 11, ratio("litellm-proxy"), ".2f"),
        ("p50 ms", 9, lambda _, r: r.p50_ms, ".2f"),
        ("p99 ms", 9, lambda _, r: r.p99_ms, ".2f"),
        ("+p50 ms", 9, added(lambda r: r.p50_ms), "+.2f"),
    ]
    if key.mode == "streamed":
        columns += [
            ("TTFT p50", 10, lambda _, r: r.ttft_p50_ms, ".2f"),
            ("+TTFT ms", 10, added(lambda r: r.ttft_p50_ms), "+.2f"),
        ]
    return [*columns, ("ok", 6, lambda _, r: r.completed, "d"), ("failed", 8, lambda _, r: r.failed, "d")]


def _title(result: BenchResult, key: RunKey) -> str:
    s = result.settings
    what = f"{s.reply_tokens}-token replies" + (", streamed" if key.mode == "streamed" else ", not streamed")
    if key.concurrency == 1:
        return f"== {what}, one request at a time (up to {s.probe_requests} requests or {s.probe_max_seconds:g} s)"
    return f"== {what}, {key.concurrency} concurrent (up to {s.requests} requests or {s.max_seconds:g} s)"


def print_runs(result: BenchResult, keys: Sequence[RunKey], out: TextIO) -> None:
    for key in keys:
        columns = _columns(result, key)
        print(_title(result, key), file=out)
        print(_row("variant", [(name, width) for name, width, _, _ in columns]), file=out)
        for variant in result.variants:
            run = variant.runs.get(key.label)
            if run is None:
                note = "FAILED, see problems below" if variant.error else "not run"
                print(_row(variant.label, []) + "  " + note, file=out)
                continue
            cells = [(_fmt(pick(variant.name, run), spec), width) for _, width, pick, spec in columns]
            print(_row(variant.label, cells), file=out)
        print(file=out)


def print_startup(result: BenchResult, out: TextIO) -> None:
    print("== start-up (process spawn -> health 200 -> first chat completion) and memory after load", file=out)
    widths = [("health s", 10), ("1st reply s", 13), ("RSS MiB", 10), ("peak MiB", 10)]
    print(_row("variant", widths), file=out)
    for v in result.variants:
        if v.name == "direct":
            continue
        figures = [
            _fmt(v.startup.health_s if v.startup else None, ".2f"),
            _fmt(v.startup.first_completion_s if v.startup else None, ".2f"),
            _fmt(v.rss_mib, ".0f"),
            _fmt(v.peak_rss_mib, ".0f"),
        ]
        print(_row(v.label, [(f, w) for f, (_, w) in zip(figures, widths, strict=True)]), file=out)
    print(file=out)


def print_problems(result: BenchResult, out: TextIO) -> None:
    lines = [f"- {v.label}: FAILED: {v.error}" for v in result.variants if v.error]
    for v in result.variants:
        lines += [
            f"- {v.label} [{k}]: {r.failed} failed, first: {r.first_error}" for k, r in v.runs.items() if r.failed
        ]
    if lines:
        print("== problems", file=out)
        print("\n".join(lines), file=out)
        print(file=out)


def print_goals(goals: Sequence[Goal], out: TextIO) -> None:
    print('== targets from issue 3 ("How fast")', file=out)
    for goal in goals:
        state = {True: "met", False: "MISSED", None: "not measured"}[goal.met]
        measured = _fmt(goal.measured, ".2f") + (f" {goal.unit}" if goal.measured is not None else "")
        print(f"[{state:^12}] {goal.name:<64} {goal.target:>20}   measured {measured}", file=out)
    print(file=out)


def print_report(result: BenchResult, keys: Sequence[RunKey], goals: Sequence[Goal], out: TextIO) -> None:
    s = result.settings
    print(
        f"Warden load benchmark: {s.cpus} CPUs (load average {s.load_average:.2f} at start), "
        f"Python {s.python}, litellm {s.litellm}, {s.prompt_chars}-character prompt, "
        f"audit writer {'on' if s.audit else 'off'}\n",
        file=out,
    )
    print_runs(result, keys, out)
    print_startup(result, out)
    print_problems(result, out)
    print_goals(goals, out)


def write_json(result: BenchResult, goals: Sequence[Goal], path: Path, extra: dict[str, object] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**asdict(result), "targets": [asdict(g) for g in goals], **(extra or {})}
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
