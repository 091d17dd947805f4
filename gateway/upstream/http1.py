"""A small HTTP/1.1 client for the fast path: asyncio protocol + llhttp (httptools), pooled.

Why not httpx here: httpcore hands a stream over one chunked-encoding chunk at a time (one
h11 ``Data`` event, one trip through four async layers), and OpenAI-compatible servers send
one chunk per token. Under load that per-token cost was the largest part of what the gateway
spent on a stream. This client delivers *everything one socket read brought in* as one
piece, so tokens that arrived together are parsed, checked and written out together.

Scope, on purpose: HTTP/1.1 over TCP or TLS, requests with a body of known length,
responses with ``content-length``, chunked encoding or read-until-close, keep-alive pooling
per origin. No proxies, redirects, cookies or compression (``accept-encoding: identity``):
``gateway.upstream.transport`` routes a deployment behind a proxy through httpx instead.

Timeouts: ``connect`` for opening the connection (TCP + TLS), ``read`` for each wait on the
socket, from sending the request on; the caller's ``total`` bound is enforced by the caller.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

#: pause the socket when this much body is waiting for a slow reader
HIGH_WATER = 256 * 1024
MAX_IDLE_PER_ORIGIN = 64
#: how long, and how much, a finished stream's connection is read for its message to end
DRAIN_S = 1.0
DRAIN_BYTES = 64 * 1024


class Http1Error(Exception):
    """The connection failed or the server broke the protocol."""


class ConnectFailed(Http1Error):
    """No connection could be opened: nothing was sent."""


class ReadTimeout(Http1Error):
    pass


class ConnectTimeout(Http1Error):
    pass


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @staticmethod
    def of(url: str) -> tuple[Origin, str]:
        """The origin of ``url`` and the request target (path + query)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if scheme == "https" else 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return Origin(scheme, parts.hostname, port), target

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


class _Connection(asyncio.Protocol):
    """One socket; carries one exchange at a time."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._paused = False
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.error: Http1Error | None = None
        self.received_any = False
        self._body: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = Http1Error(f"malformed HTTP response: {exc}")
        if self._buffered > HIGH_WATER and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.headers_done and not self.complete and self.error is None and self._reads_until_close():
            self.complete = True
        elif not self.complete and self.error is None:
            reason = f": {exc}" if exc else ""
            self.error = Http1Error(f"connection closed by the server{reason}")
        self._wake()

    # -- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)

    def on_message_complete(self) -> None:
        self.complete = True

    # -- the exchange --------------------------------------------------------------------

    def _reads_until_close(self) -> bool:
        names = {name for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        handle = loop.call_later(seconds, _expire, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    def send(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        self._reset()
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)

    async def read_head(self, read_s: float) -> None:
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self._wait_for_data(read_s)

    async def _wait_for_data(self, read_s: float) -> None:
        try:
            await self._wait(read_s)
        except TimeoutError:
            raise ReadTimeout(f"no data from the server for {read_s:g} s") from None

    async def read_some(self, read_s: float) -> bytes:
        """All body bytes that have arrived (waiting for some); b"" at the end of the body."""
        while not self._body:
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            await self._wait_for_data(read_s)
        data = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.lost and self.error is None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.lost = True


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Response:
    """An answer being read; ``aclose()`` returns its connection to the pool or closes it."""

    def __init__(self, pool: Http1Pool, conn: _Connection, read_timeout: float) -> None:
        self._pool = pool
        self._conn = conn
        self._timeout = read_timeout
        self.status_code = conn.status
        self.headers = conn.headers
        self._closed = False

    async def read_some(self) -> bytes:
        return await self._conn.read_some(self._timeout)

    async def aiter_reads(self) -> AsyncIterator[bytes]:
        while True:
            data = await self._conn.read_some(self._timeout)
            if not data:
                return
            yield data

    async def aread(self) -> bytes:
        parts = []
        while data := await self._conn.read_some(self._timeout):
            parts.append(data)
        return b"".join(parts)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.release(self._conn)

    def release_when_done(self) -> None:
        """The caller has what it wanted (a stream's ``[DONE]``) but the message may not have
        ended yet (the last chunk of chunked encoding often comes in a later packet). Closing
        now would cost the next request a new connection (a TLS handshake, for a cloud API),
        so the rest is read in the background, briefly, and the connection pooled if it ends."""
        if self._closed:
            return
        self._closed = True
        self._pool.drain_later(self._conn, self._timeout)


class Http1Pool:
    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, max_idle: int = MAX_IDLE_PER_ORIGIN) -> None:
        self._ssl = ssl_context
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._draining: set[asyncio.Task[None]] = set()
        self._max_idle = max_idle
        self._closed = False

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _connect(self, origin: Origin, connect_s: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._ssl_context() if origin.scheme == "https" else None
        try:
            async with asyncio.timeout(connect_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(origin),
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                )
        except TimeoutError:
            raise ConnectTimeout(f"connecting to {origin.host_header} took over {connect_s:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to {origin.host_header}: {exc}") from exc
        return conn

    def _checkout(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.lost and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def drain_later(self, conn: _Connection, read_s: float) -> None:
        task = asyncio.get_running_loop().create_task(self._drain(conn, min(read_s, DRAIN_S)))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    async def _drain(self, conn: _Connection, read_s: float) -> None:
        left = DRAIN_BYTES
        try:
            async with asyncio.timeout(read_s):
                while left > 0 and (data := await conn.read_some(read_s)):
                    left -= len(data)
        except (TimeoutError, Http1Error):
            pass
        self.release(conn)  # pooled if the message ended, else closed

    def release(self, conn: _Connection) -> None:
        if self._closed or not conn.reusable:
            conn.close()
            return
        idle = self._idle.setdefault(conn.origin, deque())
        if len(idle) >= self._max_idle:
            conn.close()
            return
        idle.append(conn)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes,
        connect_timeout: float,
        read_timeout: float,
    ) -> Response:
        """Send one request and wait for the response head. A pooled connection that turns
        out to be closed before any byte of the answer came back is replaced once."""
        if self._closed:
            raise Http1Error("the client is closed")
        origin, target = Origin.of(url)
        head = _head(method, target, origin, headers, len(body))
        for attempt in range(2):
            conn = self._checkout(origin) if attempt == 0 else None
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin, connect_timeout)
            try:
                conn.send(head, body)
                await conn.read_head(read_timeout)
            except ReadTimeout:
                # The request went out and the server kept it: sending it again could run it
                # twice and doubles the client's wait. A read timeout is final.
                conn.close()
                raise
            except Http1Error:
                conn.close()
                if reused and not conn.received_any:
                    continue  # the server had closed this idle connection: try a fresh one
                raise
            except BaseException:
                conn.close()
                raise
            return Response(self, conn, read_timeout)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._draining):
            task.cancel()
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()


def _head(method: str, target: str, origin: Origin, headers: dict[str, str], length: int) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"host: {origin.host_header}"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError("CR/LF in a header")
        lines.append(f"{name}: {value}")
    lines.append(f"content-length: {length}")
    lines.append("accept-encoding: identity")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
