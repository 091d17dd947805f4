"""Per-key rate limits, shared by replicas through the real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import httpx
import pytest

from gateway.errors import RateLimited
from gateway.ratelimit import RateLimiter
from tests.gateway_harness import running_gateway, write_config
from tests.upstream import SimulatorHandle

REDIS_URL = "redis://127.0.0.1:6379/0"


def need_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")


def test_limit_is_shared_between_limiters() -> None:
    need_redis()
    key = "k-" + secrets.token_hex(6)

    async def go() -> tuple[int, float]:
        a, b = RateLimiter(REDIS_URL), RateLimiter(REDIS_URL)
        allowed, retry = 0, 0.0
        try:
            for i in range(10):
                try:
                    await (a if i % 2 else b).check(key, 6, clock=1_000_000.0 + i)
                    allowed += 1
                except RateLimited as exc:
                    retry = exc.retry_after_s
        finally:
            await a.aclose()
            await b.aclose()
        return allowed, retry

    allowed, retry = asyncio.run(go())
    assert allowed == 6
    assert retry > 0


def test_previous_window_still_counts_then_fades() -> None:
    limiter = RateLimiter(None)  # the per-process fallback has the same arithmetic

    async def go() -> list[bool]:
        out = []
        for t in (0.0, 1.0, 2.0, 3.0):  # 3 in window 0 with a limit of 3 -> 4th refused
            try:
                await limiter.check("k", 3, clock=t)
                out.append(True)
            except RateLimited:
                out.append(False)
        for t in (60.0, 119.0):  # at the start of window 1 the old window weighs 1, near its end ~0
            try:
                await limiter.check("k", 3, clock=t)
                out.append(True)
            except RateLimited:
                out.append(False)
        return out

    assert asyncio.run(go()) == [True, True, True, False, False, True]


def test_unreachable_redis_fails_open() -> None:
    limiter = RateLimiter("redis://127.0.0.1:1/0")
    asyncio.run(limiter.check("k", 1))
    asyncio.run(limiter.check("k", 1))


def test_two_gateways_enforce_one_limit(simulator: SimulatorHandle, tmp_path: Path) -> None:
    need_redis()
    key = "sk-rl-" + secrets.token_hex(8)
    extra = f"redis_url: {REDIS_URL}\naudit: {{enabled: false}}\n"
    configs = []
    for name in ("a", "b"):
        config = write_config(tmp_path / name, simulator.base_url, extra=extra)
        text = config.read_text().replace(
            "keys:\n", f"keys:\n  - {{key: {key}, tenant: rl, id: rl-{key[-6:]}, rpm: 4}}\n"
        )
        config.write_text(text)
        configs.append(config)
    with running_gateway(configs[0]) as a, running_gateway(configs[1]) as b:
        codes = []
        for i in range(6):
            gw = a if i % 2 else b
            r = httpx.post(
                f"{gw.base_url}/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            )
            codes.append(r.status_code)
        assert codes.count(200) == 4 and codes.count(429) == 2
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert int(r.headers["retry-after"]) >= 1
