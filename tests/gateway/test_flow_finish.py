"""A streamed request's audit record is finished however the stream's task ends, even when the
server cancels it while the upstream is being closed (a client that hangs up right after the
last chunk: under load the cancellation lands there, and the record was lost)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from audit.record import AuditRecord
from gateway.pipeline.flow import guarded_chunks
from gateway.pipeline.response import ResponseGuard
from gateway.pipeline.session import GuardSession, new_request_id
from policies.compiled import CompiledPolicy
from policies.loader import load_policy

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"


def streamed_session(policy: CompiledPolicy) -> GuardSession:
    """A streamed chat request's session, as the route starts it."""
    return GuardSession.start(
        policy,
        request_id=new_request_id(),
        tenant="t",
        key_id="k",
        endpoint="/v1/chat/completions",
        model="m",
        stream=True,
    )


class SlowToClose:
    """Upstream chunks whose close takes a while, as a socket's does under load."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self.sent = False

    def __aiter__(self) -> AsyncIterator[list[dict[str, Any]]]:
        return self

    async def __anext__(self) -> list[dict[str, Any]]:
        if self.sent:
            raise StopAsyncIteration
        self.sent = True
        return [{"choices": [{"index": 0, "delta": {"content": "hello"}, "finish_reason": "stop"}]}]

    async def aclose(self) -> None:
        self.closing.set()
        await asyncio.sleep(30)


def test_a_cancel_while_closing_the_upstream_still_finishes_the_record() -> None:
    policy = load_policy(DEFAULT_POLICY)
    session = streamed_session(policy)
    finished: list[AuditRecord] = []
    chunks = SlowToClose()

    async def consume() -> None:
        stream = guarded_chunks(
            session, ResponseGuard(session, "chat"), chunks, route="r", started=0.0, finish=finished.append
        )
        async for _ in stream:
            pass

    async def main() -> None:
        task = asyncio.create_task(consume())
        await chunks.closing.wait()  # the stream is done; its finally is closing the upstream
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    assert len(finished) == 1
    assert finished[0].request_id == session.record.request_id


class Chunks:
    """Upstream chunk batches, as the fast path yields them."""

    def __init__(self, batches: list[list[dict[str, Any]]]) -> None:
        self.batches = batches

    def __aiter__(self) -> AsyncIterator[list[dict[str, Any]]]:
        return self

    async def __anext__(self) -> list[dict[str, Any]]:
        if not self.batches:
            raise StopAsyncIteration
        return self.batches.pop(0)


def test_the_stream_tail_and_done_leave_in_one_write_after_the_record_is_finished() -> None:
    from gateway.pipeline.flow import DONE, _relay

    policy = load_policy(DEFAULT_POLICY)
    session = streamed_session(policy)
    finished: list[AuditRecord] = []
    chunk = {"choices": [{"index": 0, "delta": {"content": "hello there. "}, "finish_reason": None}]}
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    chunks = Chunks([[chunk], [chunk, chunk], [end]])
    writes: list[bytes] = []

    async def consume() -> None:
        guarded = guarded_chunks(
            session, ResponseGuard(session, "chat"), chunks, route="r", started=0.0, finish=finished.append
        )
        async for data in _relay(session, guarded):
            # [DONE] never goes out before the record is finished (audit ack waits on it)
            assert bool(finished) == data.endswith(DONE)
            writes.append(data)

    asyncio.run(consume())
    assert len(writes) == 3  # a batch per write; the last carries the ending and [DONE]
    assert writes[-1].count(b"data: ") == 2 and b'"finish_reason":"stop"' in writes[-1]
    assert b"".join(writes).count(b"hello there. ") == 3


LEAVING_POLICY = """
name: leaving
stream:
  checks:
    - {check: secrets, action: redact}
output:
  - {check: test_slow, seconds: 2.0, timeout_ms: 10000, action: block}
"""


def test_a_client_leaving_during_the_output_stage_records_each_stream_hit_once(monkeypatch: Any) -> None:
    """The output stage records the stream's hits first; a client that hangs up while an output
    check runs must not get them recorded a second time by the cancellation path."""
    from policies import registry
    from policies.loader import load_policy_text
    from tests.faulty_checks import TEST_CHECKS

    monkeypatch.setattr(registry, "BUILTIN_CHECKS", {**registry.BUILTIN_CHECKS, **TEST_CHECKS})
    registry.check_class.cache_clear()
    try:
        policy = load_policy_text(LEAVING_POLICY, "test")
    finally:
        registry.check_class.cache_clear()
    session = streamed_session(policy)
    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    text = f"Here is the token {token} and a slow ending."
    chunks = Chunks([[{"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]}]])
    finished: list[AuditRecord] = []

    def secrets_steps() -> int:
        return sum(1 for s in session.record.steps if s.name == "secrets" and s.stage == "stream")

    async def consume() -> None:
        stream = guarded_chunks(
            session, ResponseGuard(session, "chat"), chunks, route="r", started=0.0, finish=finished.append
        )
        async for _ in stream:
            pass

    async def main() -> None:
        task = asyncio.create_task(consume())
        for _ in range(500):  # the output stage has begun once the stream's hits are recorded
            if secrets_steps():
                break
            await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    assert len(finished) == 1
    assert finished[0].status == "client_aborted"
    assert [s.name for s in finished[0].steps if s.stage == "stream"].count("secrets") == 1
