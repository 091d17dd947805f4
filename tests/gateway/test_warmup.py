"""A check starved by background start-up work gets a fresh timeout once it is over."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gateway.pipeline.checks import _bounded
from gateway.warmup import WARMUP


def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


async def test_a_timeout_while_start_up_work_runs_waits_for_it_then_counts_again() -> None:
    started, release = threading.Event(), threading.Event()

    def startup_work() -> None:
        with WARMUP.running():
            started.set()
            release.wait(5)

    worker = threading.Thread(target=startup_work)
    worker.start()
    started.wait(5)
    assert WARMUP.busy()
    asyncio.get_running_loop().call_later(0.2, release.set)
    # 0.3 s of work against a 0.1 s budget: it times out while start-up runs, gets a fresh
    # 0.1 s budget when start-up ends at 0.2 s, and finishes inside it.
    assert await _bounded(slow, 0.3, 0.1) == "done"
    worker.join(5)
    assert not WARMUP.busy()


async def test_without_start_up_work_the_timeout_holds() -> None:
    assert not WARMUP.busy()
    with pytest.raises(TimeoutError):
        await _bounded(slow, 0.3, 0.05)


async def test_a_check_slower_than_its_budget_still_times_out_after_start_up() -> None:
    def startup_work() -> None:
        with WARMUP.running():
            time.sleep(0.1)

    threading.Thread(target=startup_work).start()
    await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError):
        await _bounded(slow, 1.0, 0.05)
