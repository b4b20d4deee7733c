"""The client factory: large socket reads confined to fetcher's own clients."""

from __future__ import annotations

import asyncio

import httpcore
import httpx
import pytest
from support.httpserver import TestServer
from support.mp3factory import mp3_bytes

from fetcher.net import reads
from fetcher.net.client import make_client
from fetcher.net.http import Http, origin
from fetcher.settings import DownloadSettings

AUDIO = mp3_bytes(20_000, seed=3)


def test_fetchers_client_reads_large_and_others_keep_the_default() -> None:
    from httpcore._async.http11 import AsyncHTTP11Connection

    client = make_client(DownloadSettings())
    try:
        pool = client._transport._pool  # type: ignore[attr-defined]
        # The private names fetcher reaches for must still exist: a rename is noticed here.
        assert isinstance(pool._network_backend, reads.LargeReadBackend)
    finally:
        asyncio.run(client.aclose())
    assert AsyncHTTP11Connection.READ_NUM_BYTES == 64 * 1024  # nothing process-wide
    other = httpx.AsyncHTTPTransport()
    assert not isinstance(other._pool._network_backend, reads.LargeReadBackend)


def test_a_moved_private_name_falls_back_to_the_default() -> None:
    class Moved(httpx.AsyncHTTPTransport):
        def __init__(self) -> None:
            super().__init__()
            self._renamed_pool = self._pool
            del self._pool

    assert reads.larger_socket_reads(Moved()) is False


def test_large_reads_ask_the_socket_for_a_mebibyte(server: TestServer) -> None:
    server.add("/a.mp3", body=AUDIO)
    asked: list[int] = []

    class Recording(httpcore.AsyncNetworkStream):
        def __init__(self, inner: httpcore.AsyncNetworkStream):
            self.inner = inner

        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            asked.append(max_bytes)
            return await self.inner.read(max_bytes, timeout)

        async def write(self, buffer: bytes, timeout: float | None = None) -> None:
            await self.inner.write(buffer, timeout)

        async def aclose(self) -> None:
            await self.inner.aclose()

    class Backend(httpcore.AnyIOBackend):
        async def connect_tcp(self, *args: object, **kwargs: object) -> httpcore.AsyncNetworkStream:
            return Recording(await super().connect_tcp(*args, **kwargs))  # type: ignore[arg-type]

    async def run() -> bytes:
        # The transport https:// URLs use, asked here for a plain URL of the test server.
        transport = make_client(DownloadSettings())._transport  # type: ignore[attr-defined]
        transport._pool._network_backend = reads.LargeReadBackend(Backend())
        client = httpx.AsyncClient(transport=transport)
        async with Http(DownloadSettings(), client=client) as http:
            data = await http.fetch_small("t", server.url("/a.mp3"), max_bytes=1 << 24)
        await client.aclose()
        return data

    assert asyncio.run(run()) == AUDIO
    assert asked and min(asked) == reads.SOCKET_READ_BYTES


def test_origin_keeps_scheme_host_and_port() -> None:
    assert origin("http://Example.com/a") == "http://example.com:80"
    assert origin("https://example.com/a") == "https://example.com:443"
    assert origin("http://example.com:8080/a?t=1") == "http://example.com:8080"
    assert origin("http://[::1") == ""


def test_cookies_are_read_only_from_answers_that_set_them(
        server: TestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # A redirect that sets a session cookie is followed with it (as before), while an
    # answer without Set-Cookie costs no cookie parsing at all.
    server.add("/plain.mp3", body=AUDIO)
    server.add("/gate", redirect_to="/final.mp3", set_cookie="session=s3cr3t; Path=/")
    server.add("/final.mp3", body=AUDIO)
    built: list[object] = []
    original = httpx.Cookies._CookieCompatRequest.__init__

    def counted(self: object, *args: object) -> None:
        built.append(self)
        original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx.Cookies._CookieCompatRequest, "__init__", counted)

    async def run() -> tuple[bytes, bytes]:
        async with Http(DownloadSettings()) as http:
            plain = await http.fetch_small("p", server.url("/plain.mp3"), max_bytes=1 << 24)
            assert built == []
            gated = await http.fetch_small("g", server.url("/gate"), max_bytes=1 << 24)
        return plain, gated

    assert asyncio.run(run()) == (AUDIO, AUDIO)
    assert built  # the cookie was read, and sent with the next hop
    assert server.requests_to("/final.mp3")[0].headers["cookie"] == "session=s3cr3t"
