"""Warden in front of each kind of OpenAI-compatible server, side by side in one run.

For every chunk shape the simulator can write (``gateway.simulator.shapes``: OpenAI's own
bytes, vLLM's, Ollama's, llama.cpp's, TGI's, Python ``json.dumps`` output) a simulator that
writes that shape is started, and streamed requests go to it directly and through Warden with
the default policy, in alternating rounds so that the machine's other work weighs on both
alike. The figure that matters is Warden's requests/s divided by the same upstream's.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from benchmarks._launch import Target, launch
from benchmarks._loadgen import LoadResult, Workload, run_load
from benchmarks._procs import StartError, start_simulator, stop
from benchmarks._variants import Variant
from gateway.simulator.schema import Shape

#: the issue's target: Warden streams at least this fraction of the direct upstream's requests/s
GOAL = 0.75
LABELS: dict[Shape, str] = {
    "openai": "OpenAI (compact, system_fingerprint, logprobs null)",
    "vllm": "vLLM (compact, stop_reason on the last chunk)",
    "ollama": "Ollama (role in every delta, Go escapes)",
    "llamacpp": "llama.cpp (sorted keys, timings in last chunk)",
    "tgi": "TGI (object first, role in every delta, usage null)",
    "spaced": "json.dumps defaults (spaces, ASCII escapes)",
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (Linux /proc; 0 where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class ShapeResult:
    shape: Shape
    direct: list[LoadResult] = field(default_factory=list)
    warden: list[LoadResult] = field(default_factory=list)
    error: str | None = None
    #: CPU seconds the Warden process spent in its measured runs: unlike requests/s, barely
    #: moved by other work on the machine, so it shows the cost of each shape on a busy box
    warden_cpu_s: float = 0.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        done = sum(r.completed for r in self.warden)
        return self.warden_cpu_s * 1000 / done if done else None

    @staticmethod
    def _median(runs: list[LoadResult]) -> float | None:
        rates = [r.requests_per_s for r in runs if r.completed]
        return statistics.median(rates) if rates else None

    @property
    def direct_rps(self) -> float | None:
        return self._median(self.direct)

    @property
    def warden_rps(self) -> float | None:
        return self._median(self.warden)

    @property
    def ratio(self) -> float | None:
        d, w = self.direct_rps, self.warden_rps
        return w / d if d and w is not None else None

    @property
    def failed(self) -> int:
        return sum(r.failed for r in (*self.direct, *self.warden))


@dataclass(frozen=True)
class UpstreamSettings:
    requests: int
    concurrency: int
    max_seconds: float
    rounds: int
    warmup_seconds: float


async def _run_shape(
    shape: Shape,
    variant: Variant,
    *,
    workdir: Path,
    settings: UpstreamSettings,
    body: Callable[[bool], bytes],
    log: Callable[[str], None],
) -> ShapeResult:
    result = ShapeResult(shape)
    argv = [sys.executable, "-m", "gateway.simulator", "--host", "127.0.0.1", "--port", "0", "--shape", shape]
    try:
        simulator = await start_simulator(argv, workdir / f"simulator-{shape}.log")
    except StartError as exc:
        result.error = str(exc)
        return result
    warden: Target | None = None
    try:
        direct = await launch(
            Variant("direct", "direct", "direct"),
            upstream_url=simulator.url,
            workdir=workdir,
            audit=False,
            probe=body(False),
        )
        sub = workdir / shape
        sub.mkdir(exist_ok=True)
        warden = await launch(variant, upstream_url=simulator.url, workdir=sub, audit=False, probe=body(False))
        targets = [(direct, result.direct), (warden, result.warden)]
        for target, _ in targets:  # warm-up: connections, lazy imports, first-use caches
            work = Workload(f"{target.base_url}/chat/completions", target.headers, body(True), True)
            await run_load(
                work,
                requests=2 * settings.concurrency,
                concurrency=settings.concurrency,
                max_seconds=settings.warmup_seconds,
            )
        for round_ in range(settings.rounds):
            # Alternate which side goes first, so a burst of other work on the machine is shared.
            order = targets if round_ % 2 == 0 else targets[::-1]
            for target, runs in order:
                work = Workload(f"{target.base_url}/chat/completions", target.headers, body(True), True)
                cpu_before = cpu_seconds(warden.server.process.pid) if warden.server is not None else 0.0
                run = await run_load(
                    work, requests=settings.requests, concurrency=settings.concurrency, max_seconds=settings.max_seconds
                )
                if target is warden and warden.server is not None:
                    result.warden_cpu_s += cpu_seconds(warden.server.process.pid) - cpu_before
                runs.append(run)
                log(f"{shape} {target.variant.name}: {run.requests_per_s:.1f} req/s, {run.failed} failed")
    except StartError as exc:
        result.error = str(exc)
    finally:
        if warden is not None and warden.server is not None:
            await stop(warden.server.process)
        await stop(simulator.process)
    return result


async def run_upstreams(
    shapes: Sequence[Shape],
    variant: Variant,
    *,
    workdir: Path,
    settings: UpstreamSettings,
    body: Callable[[bool], bytes],
    log: Callable[[str], None],
) -> list[ShapeResult]:
    results = []
    for shape in shapes:
        log(f"upstream shape {shape}: starting")
        results.append(await _run_shape(shape, variant, workdir=workdir, settings=settings, body=body, log=log))
    return results


def print_upstreams(results: Sequence[ShapeResult], settings: UpstreamSettings, out: TextIO) -> None:
    print(
        f"== per upstream: streamed, {settings.concurrency} concurrent, default policy, fast path "
        f"(median of {settings.rounds} alternating round(s), up to {settings.requests} requests or "
        f"{settings.max_seconds:g} s each)",
        file=out,
    )
    width = 54
    print(
        "upstream's chunk bytes".ljust(width)
        + "direct r/s".rjust(12)
        + "Warden r/s".rjust(12)
        + "Warden/direct".rjust(15)
        + f"  >= {GOAL:.2f}".rjust(9)
        + "Warden CPU ms/req".rjust(19)
        + "failed".rjust(8),
        file=out,
    )
    for r in results:
        label = LABELS.get(r.shape, r.shape)
        if r.error:
            print(label.ljust(width) + "  FAILED: " + r.error.splitlines()[0], file=out)
            continue
        ratio = r.ratio
        verdict = "-" if ratio is None else ("met" if ratio >= GOAL else "MISSED")
        cells = [
            ("-" if r.direct_rps is None else f"{r.direct_rps:.1f}", 12),
            ("-" if r.warden_rps is None else f"{r.warden_rps:.1f}", 12),
            ("-" if ratio is None else f"{ratio:.2f}", 15),
            (verdict, 9),
            ("-" if r.cpu_ms_per_request is None else f"{r.cpu_ms_per_request:.2f}", 19),
            (str(r.failed), 8),
        ]
        print(label.ljust(width) + "".join(text.rjust(w) for text, w in cells), file=out)
    print(
        "(requests/s move with whatever else the machine runs; the CPU column is Warden's own cost per request)",
        file=out,
    )
    print(file=out)


def as_json(results: Sequence[ShapeResult]) -> list[dict[str, object]]:
    return [
        {
            "shape": r.shape,
            "error": r.error,
            "direct_rps": [x.requests_per_s for x in r.direct],
            "warden_rps": [x.requests_per_s for x in r.warden],
            "ratio": r.ratio,
            "warden_cpu_ms_per_request": r.cpu_ms_per_request,
            "failed": r.failed,
        }
        for r in results
    ]
