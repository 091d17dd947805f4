"""What the Warden plugin costs on top of LiteLLM Proxy: LiteLLM Proxy alone, LiteLLM Proxy with
``gateway.litellm_plugin.WardenGuardrail``, and Warden alone, side by side, streamed and not.

All three run as subprocesses on loopback in front of the built-in upstream simulator and
answer the same requests (the load benchmark's ~500-character prompt, 200-token replies) at a
fixed concurrency and then one at a time. The plugin and Warden alone run the same policy. The
table gives requests/s, p50/p99 latency and time to first token, with ratios against LiteLLM
Proxy alone: "plugin / LiteLLM" is what adding Warden to an existing LiteLLM Proxy costs.

    python -m benchmarks.plugin [--requests N] [--concurrency C] [--policy FILE] [--audit] [--only streamed|plain]

The last line judges the issue's goal: streamed at the run's concurrency, LiteLLM Proxy with the
Warden guardrail on serves at least ``GOAL`` of the requests/s it serves with it off (LiteLLM
itself is the bottleneck there; the guardrail must not add to it). Figures on a shared machine
are noisy: read the ratio of one run side by side, not the absolute requests/s.

Progress goes to stderr, the table to stdout. A variant that cannot start is reported and the
run goes on; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import textwrap
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from benchmarks._launch import LITELLM_READY_TIMEOUT_S, QUIET_ENV, Target, _first_completion, _headers, launch
from benchmarks._loadgen import LoadResult, Workload, run_load
from benchmarks._procs import LOOPBACK, StartError, free_port, start_http_server, start_simulator, stop
from benchmarks._variants import MODEL, REPO, Variant, warden_config
from benchmarks.load import PROMPT

POLICY = REPO / "benchmarks" / "configs" / "regex.yaml"
MODES = ("plain", "streamed")
LITELLM = Variant("litellm-proxy", "LiteLLM Proxy alone", "litellm")
PLUGIN_LABEL = "LiteLLM Proxy + Warden plugin"
WARMUP_REQUESTS = 8
#: plugin / LiteLLM Proxy alone, streamed requests/s at the run's concurrency
GOAL = 0.9


@dataclass
class Measured:
    label: str
    runs: dict[tuple[str, int], LoadResult] = field(default_factory=dict)
    error: str | None = None


def _body(stream: bool) -> bytes:
    payload: dict[str, object] = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        payload["stream"] = True
    return json.dumps(payload).encode()


def _log(message: str) -> None:
    print(f"[benchmarks.plugin] {message}", file=sys.stderr, flush=True)


async def _launch_plugin(policy: Path, *, upstream_url: str, workdir: Path, audit: bool) -> Target:
    """LiteLLM Proxy with the Warden guardrail, configured as the README shows."""
    upstream_v1 = f"{upstream_url}/v1"
    key = "sk-bench-plugin-7d1e4b9a2c6f8e3d5a0b7c9e1f2d4a6b"
    warden = warden_config(
        workdir, Variant("plugin-warden", PLUGIN_LABEL, "warden", policy), upstream_v1=upstream_v1,
        client_key="sk-bench-unused-0001", audit=audit,
    )  # fmt: skip
    config = workdir / "litellm-plugin.yaml"
    config.write_text(
        textwrap.dedent(f"""\
            model_list:
              - model_name: {MODEL}
                litellm_params: {{model: openai/{MODEL}, api_base: "{upstream_v1}", api_key: sk-sim}}
            general_settings: {{master_key: {key}}}
            guardrails:
              - guardrail_name: warden
                litellm_params:
                  guardrail: gateway.litellm_plugin.WardenGuardrail
                  mode: [pre_call, post_call]
                  default_on: true
                  warden_config: {warden}
            """),
        encoding="utf-8",
    )
    port = free_port()
    argv = [str(Path(sys.executable).parent / "litellm"), "--config", str(config), "--host", LOOPBACK]
    server, _ = await start_http_server(
        "litellm-plugin",
        [*argv, "--port", str(port)],
        port=port,
        log=workdir / "litellm-plugin.log",
        env={**QUIET_ENV, "PYTHONPATH": str(REPO)},
        ready_path="/health/readiness",
        timeout_s=LITELLM_READY_TIMEOUT_S,
    )
    try:
        await _first_completion(server, _headers(key), _body(False))
    except BaseException:
        await stop(server.process)
        raise
    return Target(LITELLM, f"{server.url}/v1", _headers(key), server, None)


async def _measure(label: str, target: Target, args: argparse.Namespace) -> Measured:
    measured = Measured(label)
    url = f"{target.base_url}/chat/completions"
    for mode in _modes(args):
        work = Workload(url, target.headers, _body(mode == "streamed"), mode == "streamed")
        await run_load(work, requests=WARMUP_REQUESTS, concurrency=args.concurrency, max_seconds=3.0)
        for concurrency, requests in ((args.concurrency, args.requests), (1, args.probe_requests)):
            run = await run_load(work, requests=requests, concurrency=concurrency, max_seconds=args.max_seconds)
            measured.runs[(mode, concurrency)] = run
            _log(f"{label} {mode} c={concurrency}: {run.requests_per_s:.1f} req/s, {run.failed} failed")
    return measured


async def _bench(label: str, start: Awaitable[Target], args: argparse.Namespace) -> Measured:
    _log(f"{label}: starting")
    try:
        target = await start
    except StartError as exc:
        _log(f"{label}: failed to start")
        return Measured(label, error=str(exc))
    try:
        return await _measure(label, target, args)
    finally:
        if target.server is not None:
            await stop(target.server.process)


async def run(args: argparse.Namespace) -> list[Measured]:
    policy = args.policy.resolve()
    with tempfile.TemporaryDirectory(prefix="warden-plugin-bench-") as tmp:
        workdir = Path(tmp)
        argv = [sys.executable, "-m", "gateway.simulator", "--host", LOOPBACK, "--port", "0"]
        simulator = await start_simulator(argv, workdir / "simulator.log")
        common = {"upstream_url": simulator.url, "workdir": workdir, "audit": args.audit, "probe": _body(False)}
        try:
            return [
                await _bench(LITELLM.label, launch(LITELLM, **common), args),
                await _bench(
                    PLUGIN_LABEL,
                    _launch_plugin(policy, upstream_url=simulator.url, workdir=workdir, audit=args.audit),
                    args,
                ),
                await _bench(
                    "Warden alone", launch(Variant("warden", "Warden alone", "warden", policy), **common), args
                ),
            ]
        finally:
            await stop(simulator.process)


def _cell(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def _modes(args: argparse.Namespace) -> tuple[str, ...]:
    return (args.only,) if args.only else MODES


def goal_line(results: Sequence[Measured], concurrency: int) -> str:
    base, plugin = results[0].runs.get(("streamed", concurrency)), results[1].runs.get(("streamed", concurrency))
    if base is None or plugin is None or not base.requests_per_s:
        return f"goal: streamed plugin / LiteLLM >= {GOAL:.2f}: not measured"
    ratio = plugin.requests_per_s / base.requests_per_s
    verdict = "met" if ratio >= GOAL else "MISSED"
    return f"goal: streamed plugin / LiteLLM >= {GOAL:.2f} at concurrency {concurrency}: {ratio:.2f} ({verdict})"


def print_table(results: Sequence[Measured], args: argparse.Namespace) -> None:
    base = results[0]
    for mode in _modes(args):
        for concurrency in (args.concurrency, 1):
            print(f"\n{mode}, concurrency {concurrency} (ratios against {base.label})")
            print(f"{'':32} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ttft p50':>9}", end="")
            print(f" {'p50 ratio':>10} {'req/s ratio':>12}")
            ref = base.runs.get((mode, concurrency))
            for m in results:
                run = m.runs.get((mode, concurrency))
                if run is None:
                    print(f"{m.label:32} {'did not start' if m.error else 'not measured'}")
                    continue
                print(
                    f"{m.label:32} {run.requests_per_s:8.1f} {_cell(run.p50_ms):>8} {_cell(run.p99_ms):>8} "
                    f"{_cell(run.ttft_p50_ms):>9} {_ratio(run.p50_ms, ref.p50_ms if ref else None):>10} "
                    f"{_ratio(run.requests_per_s, ref.requests_per_s if ref else None):>12}"
                    + (f"  ({run.failed} failed: {run.first_error})" if run.failed else "")
                )
    print(f"\npolicy: {args.policy}; audit writer: {'on' if args.audit else 'off'}; litellm {version('litellm')}")
    for m in results:
        if m.error:
            print(f"\n{m.label} did not start:\n{m.error}")
    print(goal_line(results, args.concurrency))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plugin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per variant and mode (default 200)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent requests (default 8)")
    parser.add_argument("--probe-requests", type=int, default=40, help="one-at-a-time requests per mode")
    parser.add_argument("--max-seconds", type=float, default=6.0, help="stop starting requests after this")
    parser.add_argument("--policy", type=Path, default=POLICY, help="the policy both Warden variants run")
    parser.add_argument("--audit", action="store_true", help="run both Warden variants with the audit writer on")
    parser.add_argument("--only", choices=MODES, help="measure only streamed or only non-streamed requests")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    results = asyncio.run(run(args))
    print_table(results, args)
    return 1 if any(m.error for m in results) else 0


if __name__ == "__main__":
    sys.exit(main())
