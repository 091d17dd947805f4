"""NATS JetStream, the optional broker between gateways and audit writers: the one module
that imports ``nats`` (nats-py).

The stream (``BrokerSettings.stream``, work-queue retention, file storage) holds *unlinked*
records, one per message, in the spool's line format (``Prepared.spool_line``), with the
record's id as ``Nats-Msg-Id``: JetStream drops a second publish of the same id within
``duplicate_window_s``, and the database's idempotence on the id (``audit.write.store``) catches any
later one. A message leaves the stream only when a writer acknowledges it, after its commit.

``Publisher`` is the gateway's side, for a thread (the audit writer's): it runs its own event
loop and blocks until every message of a batch is acknowledged by the stream, or raises
``Unavailable`` (then the audit writer spools the batch and replays it through here later).
``Consumer`` is a writer process's side (``audit.write.drain``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from audit.settings import BrokerSettings
from audit.write.prepared import Prepared
from audit.write.store import Unavailable

log = logging.getLogger("warden.audit")

MSG_ID = "Nats-Msg-Id"
#: what talking to the broker can raise when it is not there or stops answering
BROKER_ERRORS: tuple[type[BaseException], ...] = (nats.errors.Error, OSError, TimeoutError)

__all__ = ["BROKER_ERRORS", "MSG_ID", "Consumer", "Msg", "Publisher", "connect", "ensure_stream"]


async def _quietly(exc: Exception) -> None:
    # nats-py's default prints a traceback per failed (re)connect; the callers report it once
    log.debug("audit broker: %s", exc)


async def connect(settings: BrokerSettings) -> tuple[Client, JetStreamContext]:
    """Connect once (bounded: nats-py would retry a first connect for ever); once connected,
    the client reconnects by itself for as long as it takes."""
    nc = Client()
    try:
        await asyncio.wait_for(
            nc.connect(
                settings.url,
                error_cb=_quietly,
                # annotated int in nats-py, used as a float timeout
                connect_timeout=settings.connect_timeout_s,  # type: ignore[arg-type]
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                allow_reconnect=True,
            ),
            connect_timeout(settings),
        )
    except BaseException:
        await nc.close()
        raise
    return nc, nc.jetstream(timeout=settings.publish_timeout_s)


def connect_timeout(settings: BrokerSettings) -> float:
    return settings.connect_timeout_s * 2 + 1


async def ensure_stream(js: JetStreamContext, settings: BrokerSettings) -> None:
    """Make the stream if it is not there (replicas and writers may all try at once)."""
    try:
        await js.stream_info(settings.stream)
        return
    except NotFoundError:
        pass
    config = StreamConfig(
        name=settings.stream,
        subjects=[settings.subject],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=settings.duplicate_window_s,
    )
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        await js.stream_info(settings.stream)  # made by another process meanwhile


class Publisher:
    """Publishes batches from a thread; blocks until the stream has acknowledged each one."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="warden-audit-broker", daemon=True)
        self._thread.start()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    def _run(self, coro: Any, timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except Exception as exc:
            future.cancel()
            raise Unavailable(f"audit broker {self.settings.url}: {type(exc).__name__}: {exc}") from exc

    def send(self, items: Sequence[Prepared]) -> None:
        """Every item is in the stream once this returns; else ``Unavailable`` (some may be)."""
        if items:
            self._run(self._send(items), self.settings.publish_timeout_s + connect_timeout(self.settings) + 1)

    async def _send(self, items: Sequence[Prepared]) -> None:
        if self._js is None or self._nc is None or self._nc.is_closed:
            self._nc, self._js = await connect(self.settings)
            await ensure_stream(self._js, self.settings)
        js = self._js
        futures = [
            await js.publish_async(self.settings.subject, item.spool_line(), headers={MSG_ID: item.id})
            for item in items
        ]
        await asyncio.wait_for(asyncio.gather(*futures), self.settings.publish_timeout_s)

    def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            try:
                self._run(self._nc.drain(), 5)
            except Unavailable:
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


class Consumer:
    """A writer process's pull subscription on the shared durable consumer."""

    def __init__(self, settings: BrokerSettings, nc: Client, sub: JetStreamContext.PullSubscription) -> None:
        self.settings, self._nc, self._sub = settings, nc, sub

    @staticmethod
    async def open(settings: BrokerSettings, *, max_pending: int) -> Consumer:
        nc, js = await connect(settings)
        await ensure_stream(js, settings)
        config = ConsumerConfig(
            durable_name=settings.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=settings.ack_wait_s,
            max_ack_pending=max_pending,
        )
        sub = await js.pull_subscribe(settings.subject, durable=settings.durable, stream=settings.stream, config=config)
        return Consumer(settings, nc, sub)

    async def fetch(self, batch: int, wait_s: float) -> list[Msg]:
        try:
            return await self._sub.fetch(batch, timeout=wait_s)
        except (TimeoutError, NatsTimeout):  # nothing came: nats-py raises either
            return []

    async def flush(self) -> None:
        await self._nc.flush()

    async def close(self) -> None:
        if not self._nc.is_closed:
            await self._nc.close()
