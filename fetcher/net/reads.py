"""Larger socket reads for the clients fetcher creates, and for no one else's.

httpcore asks its network stream for at most 64 KiB per read. Each read then passes
through anyio, httpcore, h11 and httpx, so on a fast link that per-read cost is most of
fetcher's CPU. :func:`larger_socket_reads` wraps the network backend of one transport
so that its streams ask the socket for up to :data:`SOCKET_READ_BYTES` instead; a read
still returns only what the kernel has buffered at that moment (often less), so this
raises the ceiling of a read, never waits for more data. Other clients in the process
(a library user's own) keep httpcore's defaults.

The backend is reached through two private names (``transport._pool`` and the pool's
``_network_backend``); when an httpx or httpcore release moves them, the transport is
left as it is and downloads work at the default read size (tests notice the change).
"""

from __future__ import annotations

import logging
import ssl
import typing
from collections.abc import Callable, Iterable

import httpcore
import httpx

from fetcher.net import guard

log = logging.getLogger(__name__)

#: Bytes asked of the socket per read (httpcore's default: 64 KiB).
SOCKET_READ_BYTES = 1 << 20

SocketOption = typing.Union[  # noqa: UP007 - httpcore's own spelling of the type
    tuple[int, int, int], tuple[int, int, bytes | bytearray], tuple[int, int, None, int]
]


# The methods below keep httpcore's own signatures (``timeout`` parameters included).
class LargeReadStream(httpcore.AsyncNetworkStream):
    """A network stream whose reads ask for at least SOCKET_READ_BYTES."""

    def __init__(self, inner: httpcore.AsyncNetworkStream):
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max(max_bytes, SOCKET_READ_BYTES), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        return LargeReadStream(await self._inner.start_tls(ssl_context, server_hostname,
                                                           timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class LargeReadBackend(httpcore.AsyncNetworkBackend):
    """Wraps a network backend so that every stream it opens reads large (and, unless
    the connections go to a proxy, checks the address it reached: see guard)."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, *, check_peer: bool = True):
        self._inner = inner
        self._check_peer = check_peer

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[SocketOption] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address,
                                               socket_options)
        try:
            # Before a byte is sent (TLS included): see fetcher.net.guard.
            if self._check_peer:
                guard.check_connected(stream.get_extra_info("server_addr"), host)
        except guard.ConnectRefused:
            await stream.aclose()
            raise
        return LargeReadStream(stream)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[SocketOption] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return LargeReadStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def replace_backend(
    transport: httpx.AsyncHTTPTransport,
    make: Callable[[httpcore.AsyncNetworkBackend], httpcore.AsyncNetworkBackend],
) -> bool:
    """Give *transport*'s connection pool the backend ``make(current backend)``; False,
    and the transport unchanged, when httpx's or httpcore's private names moved."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not isinstance(
        backend, httpcore.AsyncNetworkBackend
    ):
        log.debug("httpcore's connection pool has changed; keeping its own backend")
        return False
    pool._network_backend = make(backend)
    return True


def larger_socket_reads(transport: httpx.AsyncHTTPTransport, *, check_peer: bool = True) -> bool:
    """Make *transport*'s connections read large (*check_peer*: and check the address
    they reach; off for a proxy's, whose address is the proxy's); False when the
    private names moved."""
    return replace_backend(transport, lambda backend: backend if isinstance(
        backend, LargeReadBackend) else LargeReadBackend(backend, check_peer=check_peer))
