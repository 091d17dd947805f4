"""A small HTTP/1.1 client for the fast path: asyncio protocol + llhttp (httptools), pooled.

Why not httpx here: httpcore hands a stream over one chunked-encoding chunk at a time (one
h11 ``Data`` event, one trip through four async layers), and OpenAI-compatible servers send
one chunk per token. Under load that per-token cost was the largest part of what the gateway
spent on a stream. This client delivers *everything one socket read brought in* as one
piece, so tokens that arrived together are parsed, checked and written out together.

Scope, on purpose: HTTP/1.1 over TCP or TLS, requests with a body of known length,
responses with ``content-length``, chunked encoding or read-until-close, keep-alive pooling
per origin with a bound on each origin's connections, gzip/deflate-encoded bodies (asked for
by the caller, decoded here). No redirects (a 3xx is handed to the caller as it is), no
cookies, no HTTP/2: an origin that answers in HTTP/2 is refused with ``Http2Refused``. Proxies
are ``gateway.upstream.transport``'s business (a CONNECT tunnel or an absolute-form request
through this same pool).

Timeouts: ``connect`` for opening the connection (TCP + TLS), ``read`` for each wait on the
socket, from sending the request on; the caller's ``total`` bound is enforced by the caller.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast
from urllib.parse import unquote, urlsplit

import httptools

#: pause the socket when this much body is waiting for a slow reader
HIGH_WATER = 256 * 1024
MAX_IDLE_PER_ORIGIN = 64
#: open connections per origin (busy + idle); more requests wait for one to come free
MAX_PER_ORIGIN = 100
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


class PoolBusy(ConnectTimeout):
    """Every connection the origin may have stayed busy while the request waited for one."""


class Http2Refused(Http1Error):
    """The origin speaks only HTTP/2; this client speaks HTTP/1.1."""


#: the first bytes of an HTTP/2 server's answer: a frame header (3-byte length, then type
#: SETTINGS or GOAWAY) where an HTTP/1.1 server would have written "HTTP/1.1 ..."
_H2_FRAME_TYPES = (0x04, 0x07)


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP forward proxy: plain requests go to it in absolute form, TLS ones in a tunnel."""

    host: str
    port: int
    #: the ``proxy-authorization`` value, from the proxy URL's user and password
    authorization: str | None = None

    @staticmethod
    def of(url: str) -> Proxy:
        parts = urlsplit(url)
        if parts.scheme.lower() != "http" or not parts.hostname:
            raise ValueError(f"not an http:// proxy URL: {url!r}")
        auth = None
        if parts.username is not None:
            user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            auth = "Basic " + base64.b64encode(user.encode()).decode()
        return Proxy(parts.hostname, parts.port or 80, auth)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int
    #: the forward proxy connections to this origin go through, if any (part of the pool key)
    proxy: Proxy | None = None

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

    @property
    def absolute_form(self) -> bool:
        """Requests name the whole URL: plain HTTP through a proxy (TLS goes in a tunnel)."""
        return self.proxy is not None and self.scheme == "http"


class _Connection(asyncio.Protocol):
    """One socket; carries one exchange at a time."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.counted = True  # in its origin's count of open connections until closed
        self.tunnel: bytes | None = None
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
        if self.tunnel is not None:  # a proxy's answer to CONNECT, before the TLS handshake
            self.tunnel += data
            self._wake()
            return
        first = not self.received_any
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if first and len(data) >= 9 and not data.startswith(b"HTTP/") and data[3] in _H2_FRAME_TYPES:
                self.error = Http2Refused(f"{self.origin.host_header} answered in HTTP/2")
            else:
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

    async def open_tunnel(self, proxy: Proxy, connect_s: float) -> None:
        """Ask the proxy for a tunnel to the origin (CONNECT) and wait for its 2xx."""
        assert self.transport is not None
        target = self.origin.host_header if self.origin.port != 443 else f"{self.origin.host_header}:443"
        lines = [f"CONNECT {target} HTTP/1.1", f"host: {target}"]
        if proxy.authorization:
            lines.append(f"proxy-authorization: {proxy.authorization}")
        self.tunnel = b""
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        while b"\r\n\r\n" not in self.tunnel:
            if self.lost or len(self.tunnel) > 65536:
                raise ConnectFailed(f"proxy {proxy.address} closed the tunnel to {target}")
            try:
                await self._wait(connect_s)
            except TimeoutError:
                raise ConnectTimeout(f"proxy {proxy.address} did not open a tunnel in {connect_s:g} s") from None
        status_line = self.tunnel.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].startswith("2"):
            raise ConnectFailed(f"proxy {proxy.address} refused the tunnel to {target}: {status_line}")
        if not self.tunnel.endswith(b"\r\n\r\n"):
            raise ConnectFailed(f"proxy {proxy.address} sent data before the TLS handshake")
        self.tunnel = None

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


def _decoder(encoding: str | None) -> zlib._Decompress | None:
    """A decompressor for the response's ``content-encoding``; None for an unencoded body."""
    name = (encoding or "identity").lower()
    if name == "identity":
        return None
    if name in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if name == "deflate":
        return zlib.decompressobj()
    raise Http1Error(f"unsupported content-encoding {name!r} (the gateway accepts gzip, deflate or none)")


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
        self._decoder = _decoder(self.header(b"content-encoding"))

    def header(self, name: bytes) -> str | None:
        """The last value of header ``name`` (lower case), if the response has it."""
        found = [value for key, value in self.headers if key == name]
        return found[-1].decode("latin-1").strip() if found else None

    async def read_some(self) -> bytes:
        """Decoded body bytes that have arrived (waiting for some); b"" at the end."""
        while True:
            data = await self._conn.read_some(self._timeout)
            if self._decoder is None:
                return data
            if not data:
                return self._decoder.flush()
            try:
                decoded = self._decoder.decompress(data)
            except zlib.error as exc:
                raise Http1Error(f"corrupt compressed body: {exc}") from exc
            if decoded:
                return decoded

    async def aiter_reads(self) -> AsyncIterator[bytes]:
        while True:
            data = await self.read_some()
            if not data:
                return
            yield data

    async def aread(self) -> bytes:
        parts = []
        while data := await self.read_some():
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
        if self._conn.complete:
            self._pool.release(self._conn)  # the message has ended already: pooled now
            return
        self._pool.drain_later(self._conn, self._timeout)


class _Slots:
    """One origin's open connections (busy, idle or draining) and the requests waiting for one."""

    __slots__ = ("open", "waiters")

    def __init__(self) -> None:
        self.open = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class Http1Pool:
    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: int = MAX_IDLE_PER_ORIGIN,
        max_per_origin: int = MAX_PER_ORIGIN,
    ) -> None:
        self._ssl = ssl_context
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._slots: dict[Origin, _Slots] = {}
        self._draining: set[asyncio.Task[None]] = set()
        self._max_idle = max_idle
        self._max_per_origin = max_per_origin
        self._closed = False

    def open_connections(self, origin_url: str) -> int:
        """Connections open to ``origin_url``'s origin now (busy, idle and draining)."""
        slots = self._slots.get(Origin.of(origin_url)[0])
        return slots.open if slots else 0

    def _discard(self, conn: _Connection) -> None:
        """Close ``conn`` and give its place to a waiting request."""
        conn.close()
        if conn.counted:
            conn.counted = False
            slots = self._slots[conn.origin]
            slots.open -= 1
            slots.wake_one()

    async def _acquire(self, origin: Origin, connect_s: float, *, pooled: bool) -> tuple[_Connection, bool]:
        """A pooled connection (True) or a new one (False), within the origin's limit: when all
        its connections are busy the request waits, up to ``connect_s``, for one to come free."""
        slots = self._slots.setdefault(origin, _Slots())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + connect_s
        while True:
            conn = self._checkout(origin) if pooled else None
            if conn is not None:
                return conn, True
            if slots.open < self._max_per_origin:
                slots.open += 1
                try:
                    return await self._connect(origin, max(0.001, deadline - loop.time())), False
                except BaseException:
                    slots.open -= 1
                    slots.wake_one()
                    raise
            waiter = loop.create_future()
            slots.waiters.append(waiter)
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    await waiter
            except TimeoutError:
                raise PoolBusy(
                    f"all {self._max_per_origin} connections to {origin.host_header} stayed busy for "
                    f"{connect_s:g} s (upstream.max_connections_per_origin)"
                ) from None
            finally:
                if not waiter.done():
                    waiter.cancel()

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _connect(self, origin: Origin, connect_s: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._ssl_context() if origin.scheme == "https" else None
        proxy = origin.proxy
        try:
            async with asyncio.timeout(connect_s):
                if proxy is None:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(origin),
                        origin.host,
                        origin.port,
                        ssl=tls,
                        server_hostname=origin.host if tls else None,
                    )
                else:
                    conn = await self._via_proxy(origin, proxy, tls, connect_s)
        except TimeoutError:
            raise ConnectTimeout(f"connecting to {origin.host_header} took over {connect_s:g} s") from None
        except ssl.SSLError as exc:
            if "NO_APPLICATION_PROTOCOL" in str(exc):
                raise Http2Refused(f"{origin.host_header} refused HTTP/1.1 in the TLS handshake") from exc
            raise ConnectFailed(f"cannot connect to {origin.host_header}: {exc}") from exc
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {origin.host_header}: {exc}") from exc
        if tls is not None and conn.transport is not None:
            ssl_object = conn.transport.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                conn.close()
                raise Http2Refused(f"{origin.host_header} chose HTTP/2 in the TLS handshake")
        return conn

    async def _via_proxy(
        self, origin: Origin, proxy: Proxy, tls: ssl.SSLContext | None, connect_s: float
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: _Connection(origin), proxy.host, proxy.port)
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to proxy {proxy.address}: {exc}") from exc
        if tls is None:
            return conn
        try:
            await conn.open_tunnel(proxy, connect_s)
            assert conn.transport is not None
            secure = await loop.start_tls(conn.transport, conn, tls, server_hostname=origin.host)
        except BaseException:
            conn.close()
            raise
        if secure is None:
            raise ConnectFailed(f"TLS through proxy {proxy.address} failed")
        conn.transport = secure
        return conn

    def _checkout(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.lost and conn.transport is not None and not conn.transport.is_closing():
                return conn
            self._discard(conn)
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
            self._discard(conn)
            return
        idle = self._idle.setdefault(conn.origin, deque())
        if len(idle) >= self._max_idle:
            self._discard(conn)
            return
        idle.append(conn)
        self._slots[conn.origin].wake_one()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes,
        connect_timeout: float,
        read_timeout: float,
        accept_encoding: str = "identity",
        proxy: Proxy | None = None,
    ) -> Response:
        """Send one request and wait for the response head. A pooled connection that turns
        out to be closed before any byte of the answer came back is replaced once."""
        if self._closed:
            raise Http1Error("the client is closed")
        origin, target = Origin.of(url)
        if proxy is not None:
            origin = dataclasses.replace(origin, proxy=proxy)
            if origin.absolute_form:
                target = f"http://{origin.host_header}{target}"
                if proxy.authorization:
                    headers = {**headers, "proxy-authorization": proxy.authorization}
        head = _head(method, target, origin, headers, len(body), accept_encoding)
        for attempt in range(2):
            conn, reused = await self._acquire(origin, connect_timeout, pooled=attempt == 0)
            try:
                conn.send(head, body)
                await conn.read_head(read_timeout)
            except ReadTimeout:
                # The request went out and the server kept it: sending it again could run it
                # twice and doubles the client's wait. A read timeout is final.
                conn.close()
                raise
            except Http1Error:
                self._discard(conn)
                if reused and not conn.received_any and attempt == 0:
                    continue  # the server had closed this idle connection: try a fresh one
                raise
            except BaseException:
                self._discard(conn)
                raise
            try:
                return Response(self, conn, read_timeout)
            except Http1Error:
                self._discard(conn)  # a content-encoding it cannot decode
                raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._draining):
            task.cancel()
        for idle in self._idle.values():
            while idle:
                self._discard(idle.pop())
        self._idle.clear()


def _head(
    method: str, target: str, origin: Origin, headers: dict[str, str], length: int, accept_encoding: str
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"host: {origin.host_header}"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError("CR/LF in a header")
        lines.append(f"{name}: {value}")
    lines.append(f"content-length: {length}")
    lines.append(f"accept-encoding: {accept_encoding}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
