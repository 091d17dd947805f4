"""Warden in front of each kind of OpenAI-compatible server, side by side in one run.

For every chunk shape the simulator can write (``gateway.simulator.shapes``: OpenAI's own
bytes, vLLM's, Ollama's, llama.cpp's, TGI's, Python ``json.dumps`` output) a simulator that
writes that shape is started, and streamed requests go to it directly and through Warden with
the default policy, in alternating rounds so that the machine's other work weighs on both
alike. The figure that matters is Warden's requests/s divided by the same upstream's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from benchmarks._launch import Target, launch
from benchmarks._loadgen import LoadResult, Workload, run_load
from benchmarks._procs import LOOPBACK, StartError, free_port, start_simulator, stop
from benchmarks._variants import Variant
from gateway.simulator.schema import Shape

#: the issue's target: Warden streams at least this fraction of the direct upstream's requests/s
GOAL = 0.75
#: through a forward proxy, at least this fraction of the same origin reached directly
PROXY_GOAL = 0.6
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
    #: Warden from another checkout (``--baseline``), measured in the same rounds: before/after
    baseline: list[LoadResult] = field(default_factory=list)
    baseline_cpu_s: float = 0.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        done = sum(r.completed for r in self.warden)
        return self.warden_cpu_s * 1000 / done if done else None

    @property
    def baseline_cpu_ms_per_request(self) -> float | None:
        done = sum(r.completed for r in self.baseline)
        return self.baseline_cpu_s * 1000 / done if done else None

    @property
    def baseline_rps(self) -> float | None:
        return self._median(self.baseline)

    @property
    def baseline_ratio(self) -> float | None:
        pairs = zip(self.direct, self.baseline, strict=False)
        ratios = [b.requests_per_s / d.requests_per_s for d, b in pairs if d.requests_per_s > 0]
        return statistics.median(ratios) if ratios else None

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
        """The median of each round's ratio: a round's two runs ran back to back, so a slow
        minute on the machine weighs on both sides of one ratio rather than on one side."""
        pairs = zip(self.direct, self.warden, strict=False)
        ratios = [w.requests_per_s / d.requests_per_s for d, w in pairs if d.requests_per_s > 0]
        return statistics.median(ratios) if ratios else None

    @property
    def failed(self) -> int:
        return sum(r.failed for r in (*self.direct, *self.warden, *self.baseline))


@dataclass(frozen=True)
class UpstreamSettings:
    requests: int
    concurrency: int
    max_seconds: float
    rounds: int
    warmup_seconds: float


async def _measure_pair(
    name: str,
    base: Target,
    measured: Target,
    result: ShapeResult,
    *,
    settings: UpstreamSettings,
    body: Callable[[bool], bytes],
    log: Callable[[str], None],
    before: Target | None = None,
) -> None:
    """Streamed runs on ``base`` (into ``result.direct``) and ``measured`` (``result.warden``),
    and ``before`` (``result.baseline``) when given, alternating which goes first, after a
    warm-up of each."""
    sides = [(base, result.direct), (measured, result.warden)]
    if before is not None:
        sides.append((before, result.baseline))
    for target, _ in sides:  # warm-up: connections, lazy imports, first-use caches
        work = Workload(f"{target.base_url}/chat/completions", target.headers, body(True), True)
        await run_load(
            work,
            requests=2 * settings.concurrency,
            concurrency=settings.concurrency,
            max_seconds=settings.warmup_seconds,
        )
    for round_ in range(settings.rounds):
        # Alternate which side goes first, so a burst of other work on the machine is shared.
        for target, runs in sides if round_ % 2 == 0 else sides[::-1]:
            work = Workload(f"{target.base_url}/chat/completions", target.headers, body(True), True)
            pid = target.server.process.pid if target.server is not None else None
            cpu_before = cpu_seconds(pid) if pid is not None else 0.0
            run = await run_load(
                work, requests=settings.requests, concurrency=settings.concurrency, max_seconds=settings.max_seconds
            )
            if pid is not None:
                spent = cpu_seconds(pid) - cpu_before
                if target is measured:
                    result.warden_cpu_s += spent
                elif target is before:
                    result.baseline_cpu_s += spent
            runs.append(run)
            log(f"{name} {target.variant.label}: {run.requests_per_s:.1f} req/s, {run.failed} failed")


async def _run_shape(
    shape: Shape,
    variant: Variant,
    *,
    workdir: Path,
    settings: UpstreamSettings,
    body: Callable[[bool], bytes],
    log: Callable[[str], None],
    baseline: Variant | None = None,
) -> ShapeResult:
    result = ShapeResult(shape)
    argv = [sys.executable, "-m", "gateway.simulator", "--host", "127.0.0.1", "--port", "0", "--shape", shape]
    try:
        simulator = await start_simulator(argv, workdir / f"simulator-{shape}.log")
    except StartError as exc:
        result.error = str(exc)
        return result
    warden: Target | None = None
    before: Target | None = None
    try:
        plain = Variant("direct", "direct upstream", "direct")
        direct = await launch(plain, upstream_url=simulator.url, workdir=workdir, audit=False, probe=body(False))
        sub = workdir / shape
        sub.mkdir(exist_ok=True)
        warden = await launch(variant, upstream_url=simulator.url, workdir=sub, audit=False, probe=body(False))
        if baseline is not None:
            old = sub / "baseline"
            old.mkdir(exist_ok=True)
            before = await launch(baseline, upstream_url=simulator.url, workdir=old, audit=False, probe=body(False))
        await _measure_pair(shape, direct, warden, result, settings=settings, body=body, log=log, before=before)
    except StartError as exc:
        result.error = str(exc)
    finally:
        for started in (before, warden):
            if started is not None and started.server is not None:
                await stop(started.server.process)
        await stop(simulator.process)
    return result


async def _start_tinyproxy(workdir: Path) -> tuple[asyncio.subprocess.Process, str]:
    binary = shutil.which("tinyproxy") or shutil.which("tinyproxy", path="/usr/bin:/usr/sbin")
    if binary is None:
        raise StartError("tinyproxy is not installed (apt-get install tinyproxy)")
    port = free_port()
    config = workdir / "tinyproxy.conf"
    config.write_text(
        f"Port {port}\nListen {LOOPBACK}\nTimeout 600\nMaxClients 1024\nAllow {LOOPBACK}\nLogLevel Error\n",
        encoding="utf-8",
    )
    with (workdir / "tinyproxy.log").open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            binary, "-d", "-c", str(config), stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink
        )
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection(LOOPBACK, port)
            writer.close()
            return process, f"http://{LOOPBACK}:{port}"
        except OSError:
            await asyncio.sleep(0.05)
    await stop(process)
    raise StartError("tinyproxy did not listen within 10 s")


async def run_proxy(
    variant: Variant,
    *,
    workdir: Path,
    settings: UpstreamSettings,
    body: Callable[[bool], bytes],
    log: Callable[[str], None],
) -> ShapeResult:
    """Warden reaching the same (OpenAI-shaped) origin directly and through tinyproxy."""
    result = ShapeResult("openai")
    folder = workdir / "proxy"
    folder.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "gateway.simulator", "--host", LOOPBACK, "--port", "0"]
    started: list[asyncio.subprocess.Process] = []
    try:
        simulator = await start_simulator(argv, folder / "simulator.log")
        started.append(simulator.process)
        proxy, proxy_url = await _start_tinyproxy(folder)
        started.append(proxy)
        direct = await launch(variant, upstream_url=simulator.url, workdir=folder, audit=False, probe=body(False))
        if direct.server is not None:
            started.append(direct.server.process)
        proxied_variant = Variant("warden-default-proxy", "Warden via tinyproxy", "warden", variant.policy)
        via = await launch(
            proxied_variant,
            upstream_url=simulator.url,
            workdir=folder,
            audit=False,
            probe=body(False),
            env={"HTTP_PROXY": proxy_url, "NO_PROXY": ""},
        )
        if via.server is not None:
            started.append(via.server.process)
        await _measure_pair("proxy", direct, via, result, settings=settings, body=body, log=log)
    except StartError as exc:
        result.error = str(exc)
    finally:
        for process in reversed(started):
            await stop(process)
    return result


def print_proxy(result: ShapeResult, out: TextIO) -> None:
    print("== through a forward proxy: Warden (default policy) to the same origin, directly and via", file=out)
    print("   tinyproxy on loopback (HTTP_PROXY), streamed, OpenAI's chunk bytes", file=out)
    if result.error:
        print(f"FAILED: {result.error.splitlines()[0]}", file=out)
        print(file=out)
        return
    direct, via, ratio = result.direct_rps, result.warden_rps, result.ratio
    verdict = "-" if ratio is None else ("met" if ratio >= PROXY_GOAL else "MISSED")
    print(
        f"origin direct {_num(direct)} r/s, via proxy {_num(via)} r/s, via proxy / direct {_num(ratio, '.2f')}"
        f"  (>= {PROXY_GOAL:.2f}: {verdict}), failed {result.failed}",
        file=out,
    )
    print(file=out)


def _num(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


async def run_upstreams(
    shapes: Sequence[Shape],
    variant: Variant,
    *,
    workdir: Path,
    settings: UpstreamSettings,
    body: Callable[[bool], bytes],
    log: Callable[[str], None],
    baseline: Variant | None = None,
) -> list[ShapeResult]:
    results = []
    for shape in shapes:
        log(f"upstream shape {shape}: starting")
        results.append(
            await _run_shape(shape, variant, workdir=workdir, settings=settings, body=body, log=log, baseline=baseline)
        )
    return results


def print_upstreams(results: Sequence[ShapeResult], settings: UpstreamSettings, out: TextIO) -> None:
    print(
        f"== per upstream: streamed, {settings.concurrency} concurrent, default policy, fast path "
        f"({settings.rounds} alternating round(s) of up to {settings.requests} requests or "
        f"{settings.max_seconds:g} s each; r/s: medians, ratio: median of the rounds' ratios)",
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
            (_num(r.direct_rps), 12),
            (_num(r.warden_rps), 12),
            (_num(ratio, ".2f"), 15),
            (verdict, 9),
            (_num(r.cpu_ms_per_request, ".2f"), 19),
            (str(r.failed), 8),
        ]
        print(label.ljust(width) + "".join(text.rjust(w) for text, w in cells), file=out)
    print(
        "(requests/s move with whatever else the machine runs; the CPU column is Warden's own cost per request)",
        file=out,
    )
    print(file=out)
    if any(r.baseline for r in results):
        _print_before_after(results, out)


def _print_before_after(results: Sequence[ShapeResult], out: TextIO) -> None:
    """The same rounds with Warden from the ``--baseline`` checkout: before and after, side by side."""
    print("== before / after: Warden from the --baseline checkout, measured in the same rounds", file=out)
    width = 54
    heads = [("before r/s", 12), ("after r/s", 12), ("before/direct", 15), ("after/direct", 14)]
    heads += [("before CPU ms/req", 19), ("after CPU ms/req", 18)]
    print("upstream's chunk bytes".ljust(width) + "".join(h.rjust(w) for h, w in heads), file=out)
    for r in results:
        if r.error or not r.baseline:
            continue
        cells = [
            (_num(r.baseline_rps), 12),
            (_num(r.warden_rps), 12),
            (_num(r.baseline_ratio, ".2f"), 15),
            (_num(r.ratio, ".2f"), 14),
            (_num(r.baseline_cpu_ms_per_request, ".2f"), 19),
            (_num(r.cpu_ms_per_request, ".2f"), 18),
        ]
        print(LABELS.get(r.shape, r.shape).ljust(width) + "".join(t.rjust(w) for t, w in cells), file=out)
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
            **(
                {
                    "baseline_rps": [x.requests_per_s for x in r.baseline],
                    "baseline_ratio": r.baseline_ratio,
                    "baseline_cpu_ms_per_request": r.baseline_cpu_ms_per_request,
                }
                if r.baseline
                else {}
            ),
        }
        for r in results
    ]
