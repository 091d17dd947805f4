"""An async httpx load generator: N requests at a fixed concurrency, stopped early at a deadline.

Each request counts as completed only if it is a 200 that ends properly (a ``[DONE]`` event
for streams, a body with ``choices`` otherwise). Time to first token is the time until the
first byte of a chunk carrying non-empty ``content``, so a role-only first chunk does not count.
The client reads raw bytes and never parses JSON, to keep its own CPU cost low on a small machine.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

_CONTENT = re.compile(rb'"content":\s*"[^"]')
_FINISH = re.compile(rb'"finish_reason":\s*"(\w+)"')
_DONE = b"data: [DONE]"
# Bytes of a stream kept as its tail: enough for the closing chunk (with finish_reason), a usage
# chunk and [DONE], and for a marker split across two reads.
_CARRY = 1024


#: replaced in a request body by the request's number, so no two prompts are the same and no
#: cache keyed on the text (the gateway's or the upstream's) can make a run look faster
SERIAL = b"#SERIAL#"


@dataclass(frozen=True)
class Workload:
    url: str
    headers: Mapping[str, str]
    body: bytes
    stream: bool

    def body_for(self, n: int) -> bytes:
        return self.body.replace(SERIAL, b"%d" % n) if SERIAL in self.body else self.body


@dataclass(frozen=True)
class LoadResult:
    requested: int
    completed: int
    failed: int
    elapsed_s: float
    requests_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    first_error: str | None


class RequestFailed(Exception):
    pass


@dataclass(frozen=True)
class _Sample:
    latency_s: float
    ttft_s: float | None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def _one(client: httpx.AsyncClient, work: Workload, n: int) -> _Sample:
    body = work.body_for(n)
    started = time.perf_counter()
    ttft: float | None = None
    tail = b""
    async with client.stream("POST", work.url, content=body, headers=work.headers) as response:
        if response.status_code != 200:
            body = await response.aread()
            raise RequestFailed(f"HTTP {response.status_code}: {body[:300].decode(errors='replace')}")
        async for chunk in response.aiter_raw():
            if ttft is None and work.stream and _CONTENT.search(tail + chunk):
                ttft = time.perf_counter() - started
            tail = (tail + chunk)[-_CARRY:] if work.stream else tail + chunk
        ended = time.perf_counter()
    check_reply(tail, work.stream)
    return _Sample(ended - started, ttft)


def check_reply(tail: bytes, stream: bool) -> None:
    """A reply counts only if it ran to its natural end: a refusal or a cut stream is a failure."""
    if stream and _DONE not in tail:
        raise RequestFailed(f"stream ended without [DONE]: ...{tail[-200:].decode(errors='replace')}")
    reasons = _FINISH.findall(tail)
    if not reasons or reasons[-1] not in (b"stop", b"length"):
        found = reasons[-1].decode() if reasons else "none"
        raise RequestFailed(f"finish_reason {found}: ...{tail[-300:].decode(errors='replace')}")


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


async def run_load(work: Workload, *, requests: int, concurrency: int, max_seconds: float) -> LoadResult:
    """Send up to ``requests`` requests from ``concurrency`` workers; none starts after ``max_seconds``."""
    samples: list[_Sample] = []
    errors: list[str] = []
    issued = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(120.0, connect=10.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as client:
        started = time.perf_counter()
        deadline = started + max_seconds

        async def worker() -> None:
            nonlocal issued
            while issued < requests and time.perf_counter() < deadline:
                issued += 1
                try:
                    samples.append(await _one(client, work, issued))
                except (httpx.HTTPError, RequestFailed) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies = [s.latency_s for s in samples]
    ttfts = [s.ttft_s for s in samples if s.ttft_s is not None]
    return LoadResult(
        requested=requests,
        completed=len(samples),
        failed=len(errors),
        elapsed_s=elapsed,
        requests_per_s=len(samples) / elapsed if elapsed > 0 else 0.0,
        p50_ms=_ms(percentile(latencies, 50)),
        p99_ms=_ms(percentile(latencies, 99)),
        ttft_p50_ms=_ms(percentile(ttfts, 50)),
        ttft_p99_ms=_ms(percentile(ttfts, 99)),
        first_error=errors[0] if errors else None,
    )
