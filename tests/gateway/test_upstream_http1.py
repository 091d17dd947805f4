"""The fast path's own HTTP/1.1 client, against real sockets on loopback.

Each test runs a small asyncio server that answers exactly as the test scripts it (raw
bytes), so framing, keep-alive, stale pooled connections, timeouts, TLS and batching of
socket reads are all exercised for real.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.upstream.http1 import ConnectFailed, ConnectTimeout, Http1Error, Http1Pool, ReadTimeout
from gateway.upstream.transport import Transports, proxied

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serve(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[str, list[int]]]:
    """A server on a free loopback port; yields its base URL and a list of connection numbers."""
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections) + 1)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}", connections
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def post(pool: Http1Pool, url: str, body: bytes = b"{}", read_s: float = 5.0):  # type: ignore[no-untyped-def]
    return pool.request(
        "POST", url + "/v1/chat", headers={"content-type": "application/json"}, body=body,
        connect_timeout=2.0, read_timeout=read_s,
    )  # fmt: skip


async def test_content_length_answer_and_keep_alive_reuse() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, body = await read_request(reader)
            seen.append(head + body)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n" + b'{"a":1}')
            await writer.drain()

    pool = Http1Pool()
    async with serve(handler) as (url, connections):
        for _ in range(3):
            response = await post(pool, url, b'{"q":2}')
            assert response.status_code == 200
            assert await response.aread() == b'{"a":1}'
            await response.aclose()
        assert connections == [1]  # one connection served all three
    await pool.aclose()
    head = seen[0].decode()
    assert head.startswith("POST /v1/chat HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{url.rsplit(':', 1)[1]}" in head
    assert "content-length: 7" in head and "accept-encoding: identity" in head
    assert seen[0].endswith(b'{"q":2}')


async def test_chunks_that_arrive_together_come_out_as_one_read() -> None:
    events = [b'data: {"n":%d}\n\n' % i for i in range(50)]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(chunked(*events))  # fifty chunked-encoding chunks in one write
        await writer.drain()

    pool = Http1Pool()
    async with serve(handler) as (url, _):
        response = await post(pool, url)
        reads = [data async for data in response.aiter_reads()]
        await response.aclose()
    await pool.aclose()
    assert b"".join(reads) == b"".join(events)
    assert len(reads) < 5  # httpx would hand these over one chunk at a time: 50 reads


async def test_read_until_close_answer() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    pool = Http1Pool()
    async with serve(handler) as (url, _):
        response = await post(pool, url)
        assert await response.aread() == b"all of it"
        await response.aclose()
    await pool.aclose()


async def test_idle_connection_closed_by_the_server_is_replaced() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        # then close without announcing it, as servers do with idle keep-alive connections

    pool = Http1Pool()
    async with serve(handler) as (url, connections):
        for _ in range(3):
            response = await post(pool, url)
            assert await response.aread() == b"ok"
            await response.aclose()
            await asyncio.sleep(0.05)
        assert len(connections) == 3
    await pool.aclose()


async def test_connection_dropped_mid_body_is_an_error_and_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD + b"5\r\nhello\r\n")
        await writer.drain()
        writer.transport.abort()

    pool = Http1Pool()
    async with serve(handler) as (url, _):
        response = await post(pool, url)
        assert await response.read_some() == b"hello"
        with pytest.raises(Http1Error, match="closed by the server"):
            await response.read_some()
        await response.aclose()
    await pool.aclose()


async def test_read_timeout_and_connect_errors() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    pool = Http1Pool()
    async with serve(silent) as (url, _):
        with pytest.raises(ReadTimeout):
            await post(pool, url, read_s=0.2)
    with pytest.raises(ConnectFailed):
        await post(pool, url)  # the server is gone: connection refused
    # A listening socket that never accepts, its backlog filled: further SYNs go unanswered.
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        try:
            with pytest.raises(ConnectTimeout):
                await pool.request(
                    "POST", f"http://127.0.0.1:{port}/x", headers={}, body=b"", connect_timeout=0.3, read_timeout=1
                )
        finally:
            for filler in fillers:
                filler.close()
    await pool.aclose()


async def test_malformed_response_is_an_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP is not HTTP\r\n\r\n")
        await writer.drain()

    pool = Http1Pool()
    async with serve(handler) as (url, _):
        with pytest.raises(Http1Error, match="malformed"):
            await post(pool, url)
    await pool.aclose()


async def test_header_values_with_cr_lf_are_refused() -> None:
    pool = Http1Pool()
    with pytest.raises(ValueError, match="CR/LF"):
        await pool.request(
            "POST", "http://127.0.0.1:9/x", headers={"authorization": "Bearer a\r\nx-evil: 1"}, body=b"",
            connect_timeout=1, read_timeout=1,
        )  # fmt: skip
    await pool.aclose()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_upstream(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecret")
        await writer.drain()

    async with serve(handler, tls=server_tls) as (url, _):
        trusting = Http1Pool(ssl_context=ssl.create_default_context(cafile=str(cert)))
        response = await post(trusting, url)
        assert await response.aread() == b"secret"
        await response.aclose()
        await trusting.aclose()
        default = Http1Pool()  # does not trust the self-signed certificate
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await post(default, url)
        await default.aclose()


def test_proxy_variables_send_the_origin_through_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not proxied("http://upstream.internal:8000/v1")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    assert proxied("https://api.openai.com/v1")
    assert not proxied("http://upstream.internal:8000/v1")  # only https goes through that proxy
    monkeypatch.setenv("NO_PROXY", "api.openai.com")
    assert not proxied("https://api.openai.com/v1")
    assert not Transports().uses_proxy("https://api.openai.com/v1")


async def test_an_origin_behind_a_proxy_goes_through_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await read_request(reader)
        seen.append(head)
        writer.write(STREAM_HEAD + chunked(b'data: {"n":1}\n\n', b"data: [DONE]\n\n"))
        await writer.drain()

    for name in ("HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with serve(proxy) as (proxy_url, _):
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        transports = Transports()
        base = "http://upstream.invalid:8000/v1"
        assert transports.uses_proxy(base)
        response = await transports.post(
            f"{base}/chat/completions", base_url=base, headers={"content-type": "application/json"}, body=b"{}",
            connect_timeout=2, read_timeout=5,
        )  # fmt: skip
        body = b"".join([data async for data in response.aiter_reads()])
        await response.aclose()
        await transports.aclose()
    assert body == b'data: {"n":1}\n\ndata: [DONE]\n\n'
    assert seen[0].startswith(b"POST http://upstream.invalid:8000/v1/chat/completions HTTP/1.1")


async def test_a_stream_left_at_done_is_drained_and_its_connection_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(STREAM_HEAD + b"e\r\ndata: [DONE]\n\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.03)  # the end of the chunked body comes in a later packet
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    pool = Http1Pool()
    async with serve(handler) as (url, connections):
        for _ in range(3):
            response = await post(pool, url)
            assert await response.read_some() == b"data: [DONE]\n\n"
            response.release_when_done()  # what the fast path does on [DONE]
            await response.aclose()  # and then, in its finally: must not close it
            await asyncio.sleep(0.1)
        assert connections == [1]
    await pool.aclose()


async def test_a_stream_abandoned_mid_way_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(STREAM_HEAD + b"7\r\npartial\r\n")
            await writer.drain()

    pool = Http1Pool()
    async with serve(handler) as (url, connections):
        for _ in range(2):
            response = await post(pool, url)
            assert await response.read_some() == b"partial"
            await response.aclose()  # a client went away: the upstream call is cut
        await asyncio.sleep(0.05)
        assert len(connections) == 2
    await pool.aclose()
