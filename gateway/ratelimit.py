"""Per-key limits on requests and tokens per minute, shared by all replicas through Redis.

A sliding pair of one-minute windows per key and measure (the previous window's count
weighted by how much of it still overlaps the last 60 s). Admission is one Lua script that
reads both measures and counts the request atomically, so N replicas enforce one limit
together; tokens are added when a request ends (its usage is known only then), so a key
over its token budget is refused from its next request on. Every answer carries OpenAI's
``x-ratelimit-*`` headers for the limits its key has. Without ``redis_url`` each process
counts on its own. If Redis cannot be reached, requests are let through and the failure is
logged: a rate limit protects capacity, and must not take the gateway down with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from gateway.errors import RateLimited

log = logging.getLogger("warden.ratelimit")
WINDOW_S = 60
EXPIRE_S = 2 * WINDOW_S + 10

# KEYS: requests now, requests before, tokens now, tokens before.
# ARGV: requests limit (0: none), tokens limit (0: none), weight of the previous window.
# Returns {allowed, which limit refused ('' when allowed), requests used, tokens used}; the
# counts are strings because Redis truncates Lua numbers to integers.
_ADMIT = """
local w = tonumber(ARGV[3])
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local rq = tonumber(redis.call('GET', KEYS[2]) or '0') * w + tonumber(redis.call('GET', KEYS[1]) or '0')
local tk = tonumber(redis.call('GET', KEYS[4]) or '0') * w + tonumber(redis.call('GET', KEYS[3]) or '0')
if rpm > 0 and rq >= rpm then
  return {0, 'requests', tostring(rq), tostring(tk)}
end
if tpm > 0 and tk >= tpm then
  return {0, 'tokens', tostring(rq), tostring(tk)}
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {1, '', tostring(rq + 1), tostring(tk)}
"""


@dataclass(frozen=True, slots=True)
class Window:
    current: int
    previous_weight: float
    retry_after_s: int

    @staticmethod
    def now(clock: float) -> Window:
        index = int(clock // WINDOW_S)
        into = clock - index * WINDOW_S
        return Window(index, 1.0 - into / WINDOW_S, max(1, int(WINDOW_S - into)))


@dataclass(frozen=True, slots=True)
class RateState:
    """What the key has left in this minute: the ``x-ratelimit-*`` headers of an answer."""

    rpm: int | None
    tpm: int | None
    requests_used: float
    tokens_used: float
    reset_s: int

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.rpm:
            out["x-ratelimit-limit-requests"] = str(self.rpm)
            out["x-ratelimit-remaining-requests"] = str(max(0, int(self.rpm - self.requests_used)))
            out["x-ratelimit-reset-requests"] = f"{self.reset_s}s"
        if self.tpm:
            out["x-ratelimit-limit-tokens"] = str(self.tpm)
            out["x-ratelimit-remaining-tokens"] = str(max(0, int(self.tpm - self.tokens_used)))
            out["x-ratelimit-reset-tokens"] = f"{self.reset_s}s"
        return out


NO_LIMITS = RateState(None, None, 0, 0, WINDOW_S)


class RateLimiter:
    def __init__(self, redis_url: str | None, prefix: str = "warden:rl") -> None:
        self._prefix = prefix
        self._redis: Any = None
        self._script: Any = None
        self._local: dict[tuple[str, str, int], float] = defaultdict(float)
        self._pending: set[asyncio.Task[None]] = set()
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(redis_url, socket_timeout=0.25, socket_connect_timeout=0.25)
            self._script = self._redis.register_script(_ADMIT)

    def _keys(self, key_id: str, w: Window) -> list[str]:
        p = self._prefix
        return [
            f"{p}:{key_id}:{w.current}",
            f"{p}:{key_id}:{w.current - 1}",
            f"{p}:tk:{key_id}:{w.current}",
            f"{p}:tk:{key_id}:{w.current - 1}",
        ]

    async def check(
        self, key_id: str, limit: int | None, tpm: int | None = None, clock: float | None = None
    ) -> RateState:
        """Count one request for ``key_id``; raise ``RateLimited`` (with the headers) when the key
        is over ``limit`` requests or ``tpm`` tokens in the last minute."""
        if not limit and not tpm:
            return NO_LIMITS
        w = Window.now(time.time() if clock is None else clock)
        allowed, refused_by, requests, tokens = await self._admit(key_id, limit or 0, tpm or 0, w)
        state = RateState(limit, tpm, requests, tokens, w.retry_after_s)
        if not allowed:
            what = f"{limit} requests" if refused_by == "requests" else f"{tpm} tokens"
            raise RateLimited(
                f"Rate limit of {what} per minute reached for this key.", w.retry_after_s, state.headers()
            )
        return state

    async def _admit(self, key_id: str, rpm: int, tpm: int, w: Window) -> tuple[bool, str, float, float]:
        if self._script is None:
            return self._admit_local(key_id, rpm, tpm, w)
        try:
            got = await self._script(keys=self._keys(key_id, w), args=[rpm, tpm, f"{w.previous_weight:.6f}", EXPIRE_S])
        except Exception as exc:  # redis down or slow: fail open, loudly
            log.warning("rate limit store unavailable (%s); request allowed", type(exc).__name__)
            return True, "", 0.0, 0.0
        refused = got[1].decode() if isinstance(got[1], bytes) else str(got[1])
        return bool(got[0]), refused, float(got[2]), float(got[3])

    def _used(self, measure: str, key_id: str, w: Window) -> float:
        return (
            self._local[(measure, key_id, w.current - 1)] * w.previous_weight
            + self._local[(measure, key_id, w.current)]
        )

    def _admit_local(self, key_id: str, rpm: int, tpm: int, w: Window) -> tuple[bool, str, float, float]:
        for stale in [k for k in self._local if k[2] < w.current - 1]:
            del self._local[stale]
        requests, tokens = self._used("rq", key_id, w), self._used("tk", key_id, w)
        if rpm and requests >= rpm:
            return False, "requests", requests, tokens
        if tpm and tokens >= tpm:
            return False, "tokens", requests, tokens
        self._local[("rq", key_id, w.current)] += 1
        return True, "", requests + 1, tokens

    async def spend_tokens(self, key_id: str, tokens: int, clock: float | None = None) -> None:
        """Add a finished request's tokens to its key's count for this minute."""
        if tokens <= 0:
            return
        w = Window.now(time.time() if clock is None else clock)
        if self._redis is None:
            self._local[("tk", key_id, w.current)] += tokens
            return
        key = self._keys(key_id, w)[2]
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                await pipe.incrby(key, tokens).expire(key, EXPIRE_S).execute()
        except Exception as exc:
            log.warning("rate limit store unavailable (%s); %d tokens not counted", type(exc).__name__, tokens)

    def spend_tokens_soon(self, key_id: str, tokens: int) -> None:
        """``spend_tokens`` from synchronous code running on the event loop (the audit hand-off)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self.spend_tokens(key_id, tokens))
        self._pending.add(task)  # keep a reference until it is done
        task.add_done_callback(self._pending.discard)

    async def aclose(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()
