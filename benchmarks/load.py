"""Load and overhead of the Warden gateway, side by side, in one run.

Starts the built-in upstream simulator, then one at a time: Warden with an empty policy, with a
regex-only policy, with the default policy (fast path and litellm path), and LiteLLM Proxy as a
passthrough, all as subprocesses on loopback. Each variant answers the same requests (a
~500-character prompt, 200-token replies) streamed and not, at a fixed concurrency and then one
at a time; the table shows requests/s, p50/p99 latency, time to first token, start-up time and
RSS, with ratios against the upstream itself and against LiteLLM Proxy.

    python -m benchmarks.load [--requests N] [--concurrency C] [--only streamed|plain] [--skip-litellm]
    python -m benchmarks.load --per-upstream [--upstreams openai,vllm,ollama,llamacpp,tgi,spaced] [--no-proxy]
    python -m benchmarks.load --per-upstream --baseline /path/to/a/checkout/of/main   # before / after

A full run ends with the per-upstream table: Warden (default policy) against the upstream
itself, streamed, for each server's way of writing stream chunks (``--shape`` of the
simulator), then Warden reaching one origin directly and through a real forward proxy
(Debian's tinyproxy, on loopback); ``--per-upstream`` runs those two alone. With ``--baseline``
(a checkout of another revision, ``git worktree add /tmp/before main`` say) the per-upstream
rounds also run Warden from that checkout, so a change is measured before and after in one run.

Figures go to stdout and to ``benchmarks/results/load.json``; progress goes to stderr. A variant
that cannot start, or a run in which no request succeeds, is reported and the run goes on;
the exit status is then 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmarks._goals import judge
from benchmarks._launch import Target, launch
from benchmarks._loadgen import Workload, run_load
from benchmarks._procs import StartError, memory_mib, start_simulator, stop
from benchmarks._report import print_report, write_json
from benchmarks._results import MODES, BenchResult, Mode, RunKey, Settings, VariantResult
from benchmarks._upstreams import (
    ShapeResult,
    UpstreamSettings,
    as_json,
    print_proxy,
    print_upstreams,
    run_proxy,
    run_upstreams,
)
from benchmarks._variants import DEFAULT_POLICY, MODEL, REPLY_TOKENS, REPO, Variant, all_variants
from gateway.simulator.schema import Shape
from gateway.simulator.shapes import SHAPES

RESULTS = REPO / "benchmarks" / "results" / "load.json"
#: where ``--per-upstream`` writes, so it does not replace a full run's figures
UPSTREAM_RESULTS = REPO / "benchmarks" / "results" / "load_upstreams.json"
WARMUP_SECONDS = 3.0
# Benign on purpose (no personal data, nothing a check acts on), so every variant does the same
# work: each check scans it and passes it. #SERIAL# becomes the request's number (_loadgen).
PROMPT = (
    "I am planning a small vegetable garden behind our house this spring and would like some "
    "practical advice. The plot gets about six hours of sun in summer, the soil is fairly heavy "
    "clay, and we usually have a dry spell in July. Which vegetables are forgiving for a first "
    "season, how should I improve the soil before planting, and how often should I water during "
    "the dry weeks? I would also like to know whether raised beds are worth the cost, and which "
    "simple habits help keep slugs and weeds under control without harsh chemicals. "
    "(Question #SERIAL# of the series.)"
)


def _body(stream: bool) -> bytes:
    # Like the openai SDK: ``stream`` is sent only when true.
    payload: dict[str, object] = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        payload["stream"] = True
    return json.dumps(payload).encode()


#: the per-upstream table's shapes, Warden's variant, settings, whether to run the proxy table,
#: and Warden from another checkout (``--baseline``) to measure alongside
UpstreamPlan = tuple[Sequence[Shape], Variant, UpstreamSettings, bool, Variant | None]


def _log(message: str) -> None:
    print(f"[benchmarks.load] {message}", file=sys.stderr, flush=True)


async def _measure(target: Target, keys: Sequence[RunKey], settings: Settings) -> VariantResult:
    variant = target.variant
    result = VariantResult(variant.name, variant.label, str(variant.policy) if variant.policy else None)
    result.startup = target.startup
    url = f"{target.base_url}/chat/completions"
    work = {mode: Workload(url, target.headers, _body(mode == "streamed"), mode == "streamed") for mode in MODES}
    # Warm-up: connections, lazy imports and first-use caches on every path the runs take.
    for mode in dict.fromkeys(key.mode for key in keys):
        await run_load(
            work[mode], requests=2 * settings.concurrency, concurrency=settings.concurrency, max_seconds=WARMUP_SECONDS
        )
    for key in keys:
        probe = key.concurrency == 1
        result.runs[key.label] = await run_load(
            work[key.mode],
            requests=settings.probe_requests if probe else settings.requests,
            concurrency=key.concurrency,
            max_seconds=settings.probe_max_seconds if probe else settings.max_seconds,
        )
        run = result.runs[key.label]
        _log(f"{variant.name} {key.label}: {run.requests_per_s:.1f} req/s, {run.completed} ok, {run.failed} failed")
    if target.server is not None:
        result.rss_mib, result.peak_rss_mib = memory_mib(target.server.process.pid)
    return result


async def _bench_variant(
    variant: Variant, *, upstream_url: str, workdir: Path, settings: Settings, keys: Sequence[RunKey]
) -> VariantResult:
    _log(f"{variant.name}: starting")
    try:
        target = await launch(
            variant, upstream_url=upstream_url, workdir=workdir, audit=settings.audit, probe=_body(False)
        )
    except StartError as exc:
        _log(f"{variant.name}: failed to start")
        return VariantResult(
            variant.name, variant.label, str(variant.policy) if variant.policy else None, error=str(exc)
        )
    try:
        return await _measure(target, keys, settings)
    finally:
        if target.server is not None:
            await stop(target.server.process)


async def run(
    variants: Sequence[Variant],
    keys: Sequence[RunKey],
    settings: Settings,
    upstreams: UpstreamPlan | None = None,
) -> tuple[BenchResult, list[ShapeResult], ShapeResult | None]:
    results: list[VariantResult] = []
    shaped: list[ShapeResult] = []
    proxied: ShapeResult | None = None
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp:
        workdir = Path(tmp)
        if not variants:
            if upstreams is not None:
                shaped, proxied = await _per_upstream(upstreams, workdir)
            return BenchResult(settings, results), shaped, proxied
        argv = [sys.executable, "-m", "gateway.simulator", "--host", "127.0.0.1", "--port", "0"]
        simulator = await start_simulator(argv, workdir / "simulator.log")
        try:
            for variant in variants:
                results.append(
                    await _bench_variant(
                        variant, upstream_url=simulator.url, workdir=workdir, settings=settings, keys=keys
                    )
                )
        finally:
            await stop(simulator.process)
        if upstreams is not None:
            shaped, proxied = await _per_upstream(upstreams, workdir)
    return BenchResult(settings, results), shaped, proxied


async def _per_upstream(upstreams: UpstreamPlan, workdir: Path) -> tuple[list[ShapeResult], ShapeResult | None]:
    shapes, variant, up, proxy, baseline = upstreams
    shaped = await run_upstreams(shapes, variant, workdir=workdir, settings=up, body=_body, log=_log, baseline=baseline)
    proxied = await run_proxy(variant, workdir=workdir, settings=up, body=_body, log=_log) if proxy else None
    return shaped, proxied


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=600, help="requests per variant and mode (default 600)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent requests (default 8)")
    parser.add_argument("--max-seconds", type=float, default=6.0, help="stop starting requests after this")
    parser.add_argument("--probe-requests", type=int, default=40, help="one-at-a-time requests per mode")
    parser.add_argument("--probe-seconds", type=float, default=2.0, help="time bound of a one-at-a-time run")
    parser.add_argument("--only", choices=MODES, help="measure only streamed or only non-streamed requests")
    parser.add_argument("--skip-litellm", action="store_true", help="leave out the LiteLLM Proxy variant")
    parser.add_argument("--variants", help="comma-separated variant names to run (default: all)")
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="the 'default policy' file")
    parser.add_argument("--audit", action="store_true", help="run Warden with its SQLite audit writer on")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"JSON results file (default {RESULTS.name}; {UPSTREAM_RESULTS.name} with --per-upstream)",
    )
    parser.add_argument(
        "--upstreams",
        help="chunk shapes for the per-upstream table: 'all', 'none' or a comma-separated list of "
        f"{', '.join(SHAPES)} (default: all, or none when --variants or --only plain is given)",
    )
    parser.add_argument("--per-upstream", action="store_true", help="run only the per-upstream and proxy tables")
    parser.add_argument("--no-proxy", action="store_true", help="leave out the forward-proxy comparison")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per upstream (default 3)")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another revision: the per-upstream rounds also run Warden from it (before/after)",
    )
    return parser


def _select(args: argparse.Namespace) -> list[Variant]:
    variants = all_variants(args.policy.resolve())
    if args.variants:
        wanted = {name.strip() for name in args.variants.split(",") if name.strip()}
        unknown = wanted - {v.name for v in variants}
        if unknown:
            raise SystemExit(
                f"unknown variant(s): {', '.join(sorted(unknown))}; known: {', '.join(v.name for v in variants)}"
            )
        variants = [v for v in variants if v.name in wanted]
    if args.skip_litellm:
        variants = [v for v in variants if v.kind != "litellm"]
    return variants


def _shapes(args: argparse.Namespace) -> list[Shape]:
    wanted = args.upstreams
    if wanted is None:
        wanted = "all" if args.per_upstream or not (args.variants or args.only == "plain") else "none"
    if wanted == "none":
        return []
    if wanted == "all":
        return list(SHAPES)
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown upstream shape(s): {', '.join(unknown)}; known: {', '.join(SHAPES)}")
    return [s for s in SHAPES if s in names]


def _litellm_version() -> str:
    try:
        return version("litellm")
    except PackageNotFoundError:
        return "not installed"


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(
        requests=args.requests,
        concurrency=args.concurrency,
        max_seconds=args.max_seconds,
        probe_requests=args.probe_requests,
        probe_max_seconds=args.probe_seconds,
        reply_tokens=REPLY_TOKENS,
        prompt_chars=len(PROMPT),
        audit=args.audit,
        cpus=os.cpu_count() or 1,
        load_average=os.getloadavg()[0],
        python=platform.python_version(),
        litellm=_litellm_version(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.probe_requests < 0:
        raise SystemExit("--requests and --concurrency must be at least 1, --probe-requests at least 0")
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    variants = [] if args.per_upstream else _select(args)
    modes: tuple[Mode, ...] = (args.only,) if args.only else MODES
    keys = [RunKey(mode, args.concurrency) for mode in modes]
    if args.probe_requests and args.concurrency != 1:
        keys += [RunKey(mode, 1) for mode in modes]
    shapes = _shapes(args)
    upstreams = None
    if shapes:
        default = next(v for v in all_variants(args.policy.resolve()) if v.name == "warden-default")
        up = UpstreamSettings(args.requests, args.concurrency, args.max_seconds, args.rounds, WARMUP_SECONDS)
        baseline = None
        if args.baseline is not None:
            repo = args.baseline.resolve()
            if not (repo / "gateway" / "cli.py").is_file():
                raise SystemExit(f"--baseline {repo} is not a Warden checkout (no gateway/cli.py)")
            # The baseline's own default policy, as its code knows it (unless --policy says otherwise).
            policy = args.policy.resolve() if args.policy != DEFAULT_POLICY else repo / "policies" / "default.yaml"
            baseline = Variant("warden-baseline", f"Warden from {repo}", "warden", policy, repo=repo)
        upstreams = (shapes, default, up, not args.no_proxy, baseline)
    try:
        result, shaped, proxied = asyncio.run(run(variants, keys, _settings(args), upstreams))
    except StartError as exc:
        print(f"cannot run the benchmark: {exc}", file=sys.stderr)
        return 2
    goals = judge(result) if variants else []
    if variants:
        print_report(result, keys, goals, sys.stdout)
    if upstreams is not None:
        print_upstreams(shaped, upstreams[2], sys.stdout)
    if proxied is not None:
        print_proxy(proxied, sys.stdout)
    extra: dict[str, object] = {"upstreams": as_json(shaped)} if shaped else {}
    if proxied is not None:
        extra["proxy"] = as_json([proxied])[0]
    output = args.output or (UPSTREAM_RESULTS if args.per_upstream else RESULTS)
    write_json(result, goals, output, extra or None)
    print(f"figures written to {output}", flush=True)
    broken = any(v.error or any(r.completed == 0 for r in v.runs.values()) for v in result.variants)
    broken |= any(s.error or s.ratio is None for s in [*shaped, *([proxied] if proxied else [])])
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
