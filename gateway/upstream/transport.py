"""How the fast path reaches an upstream: the raw HTTP/1.1 pool, or httpx where it cannot.

Both give the same small interface and raise the same errors, so ``fast_path`` does not care
which one carries a call. The raw pool (``http1``) carries almost everything, because it
hands over whole socket reads (many tokens at once under load): direct origins, and origins
that ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` send through an ``http://`` forward
proxy (plain requests in absolute form, TLS in a CONNECT tunnel), with ``NO_PROXY`` honoured
as httpx and curl read it. httpx is kept for what the pool does not speak: an ``https://`` or
SOCKS proxy, and HTTP/2 (``upstream.http2: true``). Both trust the same certificate
authorities (certifi's bundle, or ``SSL_CERT_FILE``).
"""

from __future__ import annotations

import os
import ssl
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import certifi

from gateway.config import UpstreamSettings
from gateway.upstream import http1
from gateway.upstream.http1 import (
    ConnectFailed,
    ConnectTimeout,
    Http1Error,
    Http2Refused,
    PoolBusy,
    Proxy,
    ReadTimeout,
)

if TYPE_CHECKING:  # httpx is imported only when a proxy is in the way (~0.1 s of start-up)
    import httpx

__all__ = [
    "ConnectFailed",
    "ConnectTimeout",
    "Http1Error",
    "Http2Refused",
    "PoolBusy",
    "ReadTimeout",
    "Transports",
    "UpstreamResponse",
]


class UpstreamResponse(Protocol):
    status_code: int

    async def aread(self) -> bytes: ...

    def aiter_reads(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...

    def header(self, name: bytes) -> str | None:
        """The value of response header ``name`` (lower case), if present."""
        ...

    def release_when_done(self) -> None:
        """The caller is done reading; the connection may be kept once its message ends."""
        ...


def tls_context(alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def proxy_for(url: str) -> str | None:
    """The proxy URL that the environment (``*_PROXY``, ``NO_PROXY``) sends ``url`` through."""
    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    # On POSIX proxy_bypass reads NO_PROXY from the environment, as httpx's trust_env does.
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def proxied(url: str) -> bool:
    """Does the environment send a request to ``url`` through a proxy?"""
    return proxy_for(url) is not None


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpx's exceptions as the raw pool's, so callers handle one set."""
    import httpx

    try:
        yield
    except httpx.ConnectTimeout as exc:
        raise ConnectTimeout(str(exc)) from exc
    except httpx.ConnectError as exc:
        raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise ReadTimeout(str(exc)) from exc
    except httpx.HTTPError as exc:
        raise Http1Error(f"{type(exc).__name__}: {exc}") from exc


class _HttpxResponse:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status_code = response.status_code

    async def aread(self) -> bytes:
        with _httpx_errors():
            return await self._response.aread()

    async def aiter_reads(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for data in self._response.aiter_raw():
                yield data

    async def aclose(self) -> None:
        await self._response.aclose()

    def header(self, name: bytes) -> str | None:
        value = self._response.headers.get(name.decode("latin-1"))
        return None if value is None else str(value)

    def release_when_done(self) -> None:
        return None  # httpx decides about its connections in aclose()


#: how a base URL is reached: the raw pool (directly, or through this http:// proxy) or httpx
Route = tuple[str, Proxy | None]


class Transports:
    """One raw pool and one httpx client per gateway, shared by every fast deployment."""

    def __init__(self, settings: UpstreamSettings | None = None) -> None:
        s = settings or UpstreamSettings()
        self._settings = s
        # The pool speaks HTTP/1.1 only, and says so in the TLS handshake, so an origin that
        # would pick HTTP/2 either falls back or refuses clearly (``Http2Refused``).
        self._raw = http1.Http1Pool(ssl_context=tls_context(["http/1.1"]), max_per_origin=s.max_connections_per_origin)
        self._httpx: httpx.AsyncClient | None = None
        self._routes: dict[str, Route] = {}

    def _client(self) -> httpx.AsyncClient:
        import httpx

        if self._httpx is None:
            s = self._settings
            self._httpx = httpx.AsyncClient(
                limits=httpx.Limits(
                    max_connections=s.max_connections_per_origin,
                    max_keepalive_connections=min(s.max_connections_per_origin, http1.MAX_IDLE_PER_ORIGIN),
                ),
                verify=tls_context(),  # its own context: httpx sets ALPN on it
                http1=not s.http2,
                http2=s.http2,
                follow_redirects=False,
            )
        return self._httpx

    def route(self, base_url: str) -> Route:
        """("raw", proxy or None) or ("httpx", None), decided once per base URL."""
        found = self._routes.get(base_url)
        if found is None:
            proxy = proxy_for(base_url)
            if self._settings.http2:
                found = ("httpx", None)
            elif proxy is None:
                found = ("raw", None)
            elif urlsplit(proxy).scheme.lower() == "http":
                found = ("raw", Proxy.of(proxy))
            else:
                found = ("httpx", None)  # an https:// or SOCKS proxy
            self._routes[base_url] = found
        return found

    def uses_proxy(self, base_url: str) -> bool:
        return proxied(base_url)

    def open_connections(self, base_url: str) -> int:
        """Raw-pool connections open to ``base_url``'s origin (for tests and metrics)."""
        return self._raw.open_connections(base_url)

    async def post(
        self,
        url: str,
        *,
        base_url: str,
        headers: dict[str, str],
        body: bytes,
        connect_timeout: float,
        read_timeout: float,
        accept_encoding: str = "identity",
    ) -> UpstreamResponse:
        """Send a POST and return once the response head is in; raises the errors above.
        ``accept_encoding``: "gzip" for whole replies; streams stay "identity" so no
        compressor between the upstream and the gateway holds tokens back."""
        via, proxy = self.route(base_url)
        if via == "raw":
            return await self._raw.request(
                "POST",
                url,
                headers=headers,
                body=body,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                accept_encoding=accept_encoding,
                proxy=proxy,
            )
        import httpx

        client = self._client()
        request = client.build_request(
            "POST",
            url,
            content=body,
            headers={**headers, "accept-encoding": accept_encoding},
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout),
        )
        with _httpx_errors():
            return _HttpxResponse(await client.send(request, stream=True))

    async def aclose(self) -> None:
        await self._raw.aclose()
        if self._httpx is not None:
            await self._httpx.aclose()
