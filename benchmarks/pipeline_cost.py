"""What does one streamed request cost the pipeline itself, with no HTTP around it?

The per-upstream table of ``benchmarks.load`` measures the whole gateway process (HTTP server,
upstream client, pipeline, telemetry) against the upstream, and on a busy machine its figures
swing with everything else that runs. This measures the part the gateway's own code decides, in
one process and in CPU time: a chat request with the load benchmark's prompt goes through
``run_flow`` (validation, the default policy's input stage, the fast path's stream parser, the
stream checks, the output stage, the record) and its answer through the relay to SSE bytes. The
upstream's answer is the built-in simulator's own bytes for a 200-token reply in each server's
shape (fetched once from a real simulator), handed to the fast path as if it had arrived in
``--reads`` socket reads. The figure is the least CPU time per request over ``--repeats``
batches: other work on the machine can only make a batch slower, never faster.

    python -m benchmarks.pipeline_cost [--shapes openai,ollama] [--reads 1,10] [--profile out.prof]

Run it from two checkouts (``PYTHONPATH=/path/to/other/checkout``) to compare revisions; with
``--profile`` it also writes a cProfile of one shape and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks._procs import LOOPBACK, start_simulator, stop
from benchmarks._variants import DEFAULT_POLICY, MODEL
from benchmarks.load import PROMPT
from gateway.pipeline.flow import Streamed, run_flow
from gateway.pipeline.session import GuardSession, new_request_id
from gateway.simulator.schema import Shape
from gateway.simulator.shapes import SHAPES
from gateway.upstream.base import Endpoint
from gateway.upstream.fast_path import FastUpstream
from policies.compiled import CompiledPolicy
from policies.loader import load_policy


class Replay:
    """The upstream's recorded answer, as the fast path's HTTP response hands it over."""

    status_code = 200

    def __init__(self, data: bytes, reads: int) -> None:
        size = -(-len(data) // reads)
        self._reads = [data[i : i + size] for i in range(0, len(data), size)]

    async def aiter_reads(self) -> AsyncIterator[bytes]:
        for read in self._reads:
            yield read

    def release_when_done(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class ReplayUpstream(FastUpstream):
    """The fast path (its stream parser and batching) over a recorded answer: no socket."""

    def __init__(self, data: bytes, reads: int) -> None:  # no targets, settings or pool: nothing is sent
        self._data, self._reads_count = data, reads

    async def _send(self, endpoint: Endpoint, body: dict[str, Any], *, stream: bool) -> Any:
        return Replay(self._data, self._reads_count)


async def _fetch(shape: Shape, workdir: Path) -> bytes:
    argv = [sys.executable, "-m", "gateway.simulator", "--host", LOOPBACK, "--port", "0", "--shape", shape]
    simulator = await start_simulator(argv, workdir / f"simulator-{shape}.log")
    try:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "stream": True}
        async with httpx.AsyncClient(trust_env=False, timeout=30.0) as client:
            response = await client.post(f"{simulator.url}/v1/chat/completions", json=body)
        response.raise_for_status()
        return response.content
    finally:
        await stop(simulator.process)


async def _one(policy: CompiledPolicy, upstream: ReplayUpstream, serial: int) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT.replace("#SERIAL#", str(serial))}],
        "stream": True,
    }
    session = GuardSession.start(
        policy,
        request_id=new_request_id(),
        tenant="bench",
        key_id="bench-client",
        endpoint="/v1/chat/completions",
        model=MODEL,
        stream=True,
    )
    records: list[Any] = []
    result = await run_flow(session, upstream, "chat/completions", body, records.append)
    assert isinstance(result, Streamed)
    async for _ in result.body:
        pass
    assert records, "the record was not finished"


async def _measure(policy: CompiledPolicy, upstream: ReplayUpstream, requests: int, repeats: int) -> float:
    for serial in range(requests // 4 + 1):  # warm-up: lazy imports, caches of the checks
        await _one(policy, upstream, serial)
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for serial in range(requests):
            await _one(policy, upstream, serial)
        best = min(best, (time.process_time() - started) / requests)
    return best * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="all", help=f"'all' or a comma-separated list of {', '.join(SHAPES)}")
    parser.add_argument("--reads", default="1,10", help="socket reads the answer arrives in (comma-separated)")
    parser.add_argument("--requests", type=int, default=100, help="requests per timed batch")
    parser.add_argument("--repeats", type=int, default=7, help="timed batches; the least CPU time counts")
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the first shape and read count here")
    args = parser.parse_args(argv)
    shapes: list[Shape] = list(SHAPES) if args.shapes == "all" else [s for s in SHAPES if s in args.shapes.split(",")]
    reads = [int(r) for r in args.reads.split(",")]
    if not shapes or any(r < 1 for r in reads):
        raise SystemExit("--shapes names no known shape, or --reads is below 1")
    policy = load_policy(args.policy)
    policy.warm()
    with tempfile.TemporaryDirectory(prefix="warden-cost-") as tmp:
        answers = {shape: asyncio.run(_fetch(shape, Path(tmp))) for shape in shapes}
    print(
        f"== pipeline CPU per streamed request (in-process, no HTTP), {args.policy.name}, load {os.getloadavg()[0]:.1f}"
    )
    print("shape".ljust(10) + "".join(f"{r} read{'s' if r > 1 else ''}".rjust(12) for r in reads))
    for shape in shapes:
        cells = [
            asyncio.run(_measure(policy, ReplayUpstream(answers[shape], r), args.requests, args.repeats)) for r in reads
        ]
        print(shape.ljust(10) + "".join(f"{ms:.3f} ms".rjust(12) for ms in cells), flush=True)
    if args.profile is not None:
        upstream = ReplayUpstream(answers[shapes[0]], reads[0])
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(_measure(policy, upstream, args.requests, 1))
        profiler.disable()
        profiler.dump_stats(args.profile)
        print(f"\n== cProfile of {shapes[0]}, {reads[0]} read(s), written to {args.profile}")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
