"""The fast path's transport rules against real loopback servers: compressed replies, the
per-origin connection bound, HTTP/2 origins, redirects refused."""

from __future__ import annotations

import asyncio
import gzip
import logging
import zlib

import h2.config
import h2.connection
import h2.events
import pytest

from gateway.config import Deployment, UpstreamSettings
from gateway.errors import UpstreamError
from gateway.upstream.fast_path import FastUpstream
from gateway.upstream.http1 import ConnectTimeout, Http1Error, Http1Pool, Http2Refused
from gateway.upstream.transport import Transports
from tests.gateway.test_upstream_http1 import STREAM_HEAD, chunked, post, read_request, serve

REPLY = b'{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}'


def fast(url: str, **settings: object) -> tuple[FastUpstream, Transports]:
    s = UpstreamSettings.model_validate({"num_retries": 0, **settings})
    deployment = Deployment.model_validate(
        {"model_name": "m", "litellm_params": {"model": "openai/m", "api_base": f"{url}/v1", "api_key": "sk-x"}}
    )
    transports = Transports(s)
    return FastUpstream([deployment], s, transports), transports


CHAT = {"messages": [{"role": "user", "content": "hi"}]}


async def test_gzip_reply_is_decoded_and_asked_for_only_when_not_streaming() -> None:
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            heads.append(head)
            if b"accept-encoding: gzip" in head:
                packed = gzip.compress(REPLY)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(packed))
                writer.write(packed)
            else:
                writer.write(STREAM_HEAD + chunked(b'data: {"choices":[]}\n\n', b"data: [DONE]\n\n"))
            await writer.drain()

    async with serve(handler) as (url, connections):
        upstream, transports = fast(url)
        assert (await upstream.call("chat/completions", CHAT))["choices"][0]["message"]["content"] == "hi"
        assert [batch async for batch in upstream.stream("chat/completions", {**CHAT, "stream": True})] == [
            [{"choices": []}]
        ]
        await transports.aclose()
    assert b"accept-encoding: gzip\r\n" in heads[0]
    assert b"accept-encoding: identity\r\n" in heads[1]  # streams are never compressed
    assert connections == [1]


async def test_deflate_streams_decode_and_unknown_encodings_are_refused() -> None:
    packer = zlib.compressobj()
    deflated = packer.compress(b"data: [DONE]\n\n") + packer.flush()
    answers = [
        b"HTTP/1.1 200 OK\r\ncontent-encoding: deflate\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(deflated),
        b"HTTP/1.1 200 OK\r\ncontent-encoding: br\r\ncontent-length: 2\r\n\r\nxx",
        b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 4\r\n\r\nnope",
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answers.pop(0))
        await writer.drain()

    pool = Http1Pool()
    async with serve(handler) as (url, _):
        response = await post(pool, url)
        assert await response.aread() == b"data: [DONE]\n\n"
        await response.aclose()
        with pytest.raises(Http1Error, match="unsupported content-encoding 'br'"):
            await post(pool, url)
        response = await post(pool, url)
        with pytest.raises(Http1Error, match="corrupt compressed body"):
            await response.aread()
        await response.aclose()
    await pool.aclose()


async def test_connections_per_origin_are_bounded_and_reused() -> None:
    gate = asyncio.Event()
    busy = 0
    most = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal busy, most
        while True:
            await read_request(reader)
            busy += 1
            most = max(most, busy)
            await gate.wait()
            busy -= 1
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    pool = Http1Pool(max_per_origin=2)

    async def one() -> bytes:
        response = await post(pool, url)
        try:
            return await response.aread()
        finally:
            await response.aclose()

    async with serve(handler) as (url, connections):
        tasks = [asyncio.create_task(one()) for _ in range(5)]
        await asyncio.sleep(0.3)
        assert busy == 2 and pool.open_connections(url) == 2  # three wait for a connection
        gate.set()
        assert await asyncio.gather(*tasks) == [b"ok"] * 5
        assert len(connections) == 2 and most == 2
        gate.clear()
        held = [asyncio.create_task(one()) for _ in range(2)]
        await asyncio.sleep(0.2)
        with pytest.raises(ConnectTimeout, match="max_connections_per_origin"):
            await pool.request("POST", url + "/v1/chat", headers={}, body=b"{}", connect_timeout=0.2, read_timeout=5)
        gate.set()
        await asyncio.gather(*held)
    await pool.aclose()


async def test_the_connection_bound_comes_from_the_config() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(0.5)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()

    async with serve(handler) as (url, connections):
        upstream, transports = fast(url, max_connections_per_origin=1, connect_timeout_s=0.1)
        first = asyncio.create_task(upstream.call("chat/completions", CHAT))
        await asyncio.sleep(0.1)
        with pytest.raises(UpstreamError, match=r"free connection \(upstream.max_connections_per_origin\)"):
            await upstream.call("chat/completions", CHAT)
        assert await first == {}
        await transports.aclose()
    assert connections == [1]
    assert UpstreamSettings().max_connections_per_origin == 100


async def h2_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A real HTTP/2 server (prior knowledge, no TLS) answering every POST with REPLY."""
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    await writer.drain()
    while data := await reader.read(65536):
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            writer.write(conn.data_to_send())
            await writer.drain()
            return
        for event in events:
            if isinstance(event, h2.events.StreamEnded):
                conn.send_headers(event.stream_id, [(":status", "200"), ("content-type", "application/json")])
                conn.send_data(event.stream_id, REPLY, end_stream=True)
        writer.write(conn.data_to_send())
        await writer.drain()


async def test_an_http2_origin_is_refused_with_the_setting_named_or_spoken_to_when_set() -> None:
    async with serve(h2_server) as (url, _):
        pool = Http1Pool()
        with pytest.raises(Http2Refused, match="answered in HTTP/2"):
            await post(pool, url)
        await pool.aclose()
        upstream, transports = fast(url)
        with pytest.raises(UpstreamError, match=r"speaks only HTTP/2.*`upstream.http2: true`") as refused:
            await upstream.call("chat/completions", CHAT)
        assert url not in refused.value.message  # the upstream's address is logged, not told to clients
        await transports.aclose()
        upstream, transports = fast(url, http2=True)
        reply = await upstream.call("chat/completions", CHAT)
        assert reply["choices"][0]["message"]["content"] == "hi"
        await transports.aclose()


async def test_redirects_are_not_followed_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    elsewhere: list[bytes] = []

    async def attacker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await read_request(reader)
        elsewhere.append(head)

    async with serve(attacker) as (evil, _):

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await read_request(reader)
                location = f"{evil}/v1/chat/completions".encode()
                writer.write(b"HTTP/1.1 307 Temporary Redirect\r\nlocation: %s\r\ncontent-length: 0\r\n\r\n" % location)
                await writer.drain()

        async with serve(handler) as (url, _):
            upstream, transports = fast(url)
            with caplog.at_level(logging.WARNING, logger="warden.upstream"):
                for request in (upstream.call("chat/completions", CHAT), upstream.call("chat/completions", CHAT)):
                    with pytest.raises(UpstreamError, match=r"redirect \(HTTP 307\); redirects are not followed"):
                        await request
                with pytest.raises(UpstreamError, match="redirect"):
                    async for _ in upstream.stream("chat/completions", {**CHAT, "stream": True}):
                        pass
            await transports.aclose()
    assert elsewhere == []
    logged = [r for r in caplog.records if "redirect" in r.getMessage()]
    assert len(logged) == 1 and evil in logged[0].getMessage()
