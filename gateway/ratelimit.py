"""Per-key request rate limits, shared by all replicas through Redis.

A sliding pair of one-minute windows per key (the previous window's count weighted by how
much of it still overlaps the last 60 s), updated atomically by one Lua script, so N
replicas enforce one limit together. Without ``redis_url`` each process counts on its own.
If Redis cannot be reached, requests are let through and the failure is logged: a rate
limit protects capacity, and must not take the gateway down with it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from gateway.errors import RateLimited

log = logging.getLogger("warden.ratelimit")
WINDOW_S = 60

# KEYS[1] current window, KEYS[2] previous window; ARGV: limit, weight of previous (0..1 as text)
_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local estimate = previous * tonumber(ARGV[2]) + current
if estimate >= tonumber(ARGV[1]) then
  return 0
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 130)
return 1
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


class RateLimiter:
    def __init__(self, redis_url: str | None, prefix: str = "warden:rl") -> None:
        self._prefix = prefix
        self._redis: Any = None
        self._script: Any = None
        self._local: dict[tuple[str, int], int] = defaultdict(int)
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(redis_url, socket_timeout=0.25, socket_connect_timeout=0.25)
            self._script = self._redis.register_script(_SCRIPT)

    async def check(self, key_id: str, limit: int | None, clock: float | None = None) -> None:
        """Count one request for ``key_id``; raise ``RateLimited`` when it is over ``limit`` per minute."""
        if not limit:
            return
        w = Window.now(time.time() if clock is None else clock)
        allowed = await self._allow(key_id, limit, w)
        if not allowed:
            raise RateLimited(f"Rate limit of {limit} requests per minute reached for this key.", w.retry_after_s)

    async def _allow(self, key_id: str, limit: int, w: Window) -> bool:
        if self._script is None:
            return self._allow_local(key_id, limit, w)
        keys = [f"{self._prefix}:{key_id}:{w.current}", f"{self._prefix}:{key_id}:{w.current - 1}"]
        try:
            return bool(await self._script(keys=keys, args=[limit, f"{w.previous_weight:.6f}"]))
        except Exception as exc:  # redis down or slow: fail open, loudly
            log.warning("rate limit store unavailable (%s); request allowed", type(exc).__name__)
            return True

    def _allow_local(self, key_id: str, limit: int, w: Window) -> bool:
        current, previous = (key_id, w.current), (key_id, w.current - 1)
        if self._local[previous] * w.previous_weight + self._local[current] >= limit:
            return False
        self._local[current] += 1
        for stale in [k for k in self._local if k[1] < w.current - 1]:
            del self._local[stale]
        return True

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
