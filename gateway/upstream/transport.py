"""How the fast path reaches an upstream: the raw HTTP/1.1 pool, or httpx behind a proxy.

Both give the same small interface and raise the same three errors, so ``fast_path`` does
not care which one carries a call. The raw pool (``http1``) is the default because it hands
over whole socket reads (many tokens at once under load); httpx is kept for origins that an
``HTTP(S)_PROXY`` / ``ALL_PROXY`` variable sends through a proxy, which the raw pool does not
speak. Both trust the same certificate authorities (certifi's bundle, or ``SSL_CERT_FILE``).
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

from gateway.upstream import http1
from gateway.upstream.http1 import ConnectFailed, ConnectTimeout, Http1Error, ReadTimeout

if TYPE_CHECKING:  # httpx is imported only when a proxy is in the way (~0.1 s of start-up)
    import httpx

__all__ = ["ConnectFailed", "ConnectTimeout", "Http1Error", "ReadTimeout", "Transports", "UpstreamResponse"]


class UpstreamResponse(Protocol):
    status_code: int

    async def aread(self) -> bytes: ...

    def aiter_reads(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...

    def release_when_done(self) -> None:
        """The caller is done reading; the connection may be kept once its message ends."""
        ...


def tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())


def proxied(url: str) -> bool:
    """Would httpx (``trust_env``) send a request to ``url`` through a proxy?"""
    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    # On POSIX proxy_bypass reads NO_PROXY from the environment, as httpx's trust_env does.
    return not urllib.request.proxy_bypass(parts.hostname or "")


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

    def release_when_done(self) -> None:
        return None  # httpx decides about its connections in aclose()


class Transports:
    """One raw pool and one httpx client per gateway, shared by every fast deployment."""

    def __init__(self) -> None:
        context = tls_context()
        self._raw = http1.Http1Pool(ssl_context=context)
        self._httpx: httpx.AsyncClient | None = None
        self._context = context
        self._proxied: dict[str, bool] = {}

    def _client(self) -> httpx.AsyncClient:
        import httpx

        if self._httpx is None:
            self._httpx = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200), verify=self._context
            )
        return self._httpx

    def uses_proxy(self, base_url: str) -> bool:
        found = self._proxied.get(base_url)
        if found is None:
            found = self._proxied[base_url] = proxied(base_url)
        return found

    async def post(
        self,
        url: str,
        *,
        base_url: str,
        headers: dict[str, str],
        body: bytes,
        connect_timeout: float,
        read_timeout: float,
    ) -> UpstreamResponse:
        """Send a POST and return once the response head is in; raises the errors above."""
        if not self.uses_proxy(base_url):
            return await self._raw.request(
                "POST", url, headers=headers, body=body, connect_timeout=connect_timeout, read_timeout=read_timeout
            )
        import httpx

        client = self._client()
        request = client.build_request(
            "POST",
            url,
            content=body,
            headers=headers,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        )
        with _httpx_errors():
            return _HttpxResponse(await client.send(request, stream=True))

    async def aclose(self) -> None:
        await self._raw.aclose()
        if self._httpx is not None:
            await self._httpx.aclose()
