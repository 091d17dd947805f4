"""Upstreams behind a real forward proxy (tinyproxy on loopback), on the fast path's own pool.

Plain http:// origins go to the proxy in absolute form; https:// ones through a CONNECT
tunnel that is kept and reused; ``NO_PROXY`` sends an origin around the proxy; the proxy's
Basic auth comes from the proxy URL.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import UpstreamError
from tests.forward_proxy import ForwardProxy, tinyproxy
from tests.gateway.test_upstream_http1 import STREAM_HEAD, certificate, chunked, read_request, serve
from tests.gateway.test_upstream_transport import CHAT, fast
from tests.upstream import SimulatorHandle

__all__ = ["certificate"]  # the module fixture, shared with the raw pool's tests

PROXY_VARS = [f"{scheme}_{case}" for scheme in ("HTTP", "HTTPS", "ALL", "NO") for case in ("PROXY",)]
PROXY_VARS += [name.lower() for name in PROXY_VARS]


@pytest.fixture(scope="module")
def forward_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    with tinyproxy(tmp_path_factory.mktemp("proxy")) as proxy:
        yield proxy


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def stream_text(upstream: Any) -> str:
    text = ""
    async for batch in upstream.stream("chat/completions", {**CHAT, "model": "sim-chat", "stream": True}):
        for chunk in batch:
            for choice in chunk.get("choices") or []:
                text += choice.get("delta", {}).get("content") or ""
    return text


async def test_a_stream_goes_through_the_proxy_and_no_proxy_goes_around_it(
    sim: SimulatorHandle, forward_proxy: ForwardProxy, clean_env: pytest.MonkeyPatch
) -> None:
    sim.script(content="Through the proxy and back.", chunking="word")
    clean_env.setenv("HTTP_PROXY", forward_proxy.url)
    root = sim.base_url.removesuffix("/v1")
    upstream, transports = fast(root)
    assert transports.route(f"{root}/v1")[1] is not None  # the raw pool, via the proxy
    assert await stream_text(upstream) == "Through the proxy and back."
    assert await stream_text(upstream) == "Through the proxy and back."
    await transports.aclose()
    via = [r.headers.get("via", "") for r in sim.requests()]
    assert len(via) == 2 and all("tinyproxy" in v for v in via), via

    clean_env.setenv("NO_PROXY", "localhost,127.0.0.1")
    upstream, transports = fast(root)
    assert transports.route(f"{root}/v1") == ("raw", None)
    assert await stream_text(upstream) == "Through the proxy and back."
    await transports.aclose()
    assert "via" not in sim.requests()[-1].headers


async def test_tls_origin_through_a_kept_connect_tunnel(
    certificate: tuple[Path, Path], forward_proxy: ForwardProxy, clean_env: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            heads.append(head)
            events = [b'data: {"choices":[{"index":0,"delta":{"content":"%d"}}]}\n\n' % i for i in range(5)]
            writer.write(STREAM_HEAD + chunked(*events, b"data: [DONE]\n\n"))
            await writer.drain()

    async with serve(handler, tls=server_tls) as (url, connections):
        clean_env.setenv("HTTPS_PROXY", forward_proxy.url)
        clean_env.setenv("SSL_CERT_FILE", str(cert))
        upstream, transports = fast(url)
        for _ in range(3):
            assert await stream_text(upstream) == "01234"
        await transports.aclose()
    port = url.rsplit(":", 1)[1]
    assert connections == [1]  # one tunnel carried all three streams
    assert len(re.findall(rf"CONNECT 127\.0\.0\.1:{port}", forward_proxy.log_text())) == 1
    assert heads[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")  # origin form inside the tunnel


async def test_proxy_basic_auth_from_the_proxy_url(
    sim: SimulatorHandle, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    sim.script(content="Authorized.", chunking="word")
    root = sim.base_url.removesuffix("/v1")
    with tinyproxy(tmp_path, basic_auth=("warden", "s3cret")) as proxy:
        clean_env.setenv("HTTP_PROXY", proxy.url)
        upstream, transports = fast(root)
        with pytest.raises(UpstreamError, match="407"):
            await upstream.call("chat/completions", {**CHAT, "model": "sim-chat"})
        await transports.aclose()
        clean_env.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://warden:s3cret@"))
        upstream, transports = fast(root)
        reply = await upstream.call("chat/completions", {**CHAT, "model": "sim-chat"})
        await transports.aclose()
    assert reply["choices"][0]["message"]["content"] == "Authorized."
    assert "proxy-authorization" not in sim.requests()[-1].headers  # the proxy keeps it to itself


async def test_a_proxy_that_refuses_the_tunnel_is_a_clear_error(
    forward_proxy: ForwardProxy, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("HTTPS_PROXY", forward_proxy.url)
    upstream, transports = fast("https://127.0.0.1:1")  # nothing listens there: the proxy answers 5xx
    with pytest.raises(UpstreamError, match="unreachable"):
        await upstream.call("chat/completions", CHAT)
    await transports.aclose()
