"""Plain-TCP connections on bare non-blocking sockets, for ``http://`` URLs.

httpcore reaches the network through a backend; its default (anyio over asyncio's
transports) copies every chunk into a queue of its own and costs tens of microseconds
per read. :class:`PlainSocketBackend` connects with asyncio's ``sock_*`` calls instead,
so that there is no buffer between the socket and h11: once httpx has read a response's
headers and first body bytes, :mod:`fetcher.net.body` may read the rest of the body
straight from the socket. TLS connections keep httpcore's own backend (``https://``
has a transport of its own, see :func:`fetcher.net.client.make_client`).

Connecting follows RFC 8305 in a small way: addresses alternate between families and
each later attempt starts 250 ms after the one before it, the first to connect wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import typing
from collections.abc import Iterable

import httpcore
import httpx

from fetcher.net import guard
from fetcher.net.reads import replace_backend

#: Bytes asked of the socket per read (httpcore asks for 64 KiB; asyncio's own transports
#: read at most 256 KiB). Large bodies bypass these reads (fetcher.net.body).
READ_BUFFER_BYTES = 256 * 1024
#: How long an attempt to connect has alone before the next address is tried too.
ATTEMPT_DELAY = 0.25

SocketOption = typing.Union[  # noqa: UP007 - httpcore's own spelling of the type
    tuple[int, int, int], tuple[int, int, bytes | bytearray], tuple[int, int, None, int]
]
Address = tuple[int, int, int, tuple[typing.Any, ...]]


class PlainSocketStream(httpcore.AsyncNetworkStream):
    """One connected, non-blocking socket; nothing buffered above it."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        #: Set when the rest of a body was read from the socket directly: reads then
        #: see the end of the stream, so that httpcore ends that response (and closes
        #: the connection) through its ordinary error path.
        self.taken = False
        # One buffer reused by every read: a fresh large object per read would cost an
        # allocation and page faults each time.
        self._buffer = bytearray(READ_BUFFER_BYTES)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self.taken:
            return b""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                count = await loop.sock_recv_into(self.sock, self._buffer)
                return bytes(memoryview(self._buffer)[:count])
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc) or "read timed out") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_sendall(self.sock, buffer)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc) or "write timed out") from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        self.sock.close()

    async def start_tls(self, ssl_context: typing.Any, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("TLS connections use httpcore's own backend")

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "socket":
            return self.sock
        if info == "is_readable":
            return _readable(self.sock)
        with contextlib.suppress(OSError):
            if info == "client_addr":
                return self.sock.getsockname()
            if info == "server_addr":
                return self.sock.getpeername()
        return None


def _readable(sock: socket.socket) -> bool:
    """True when an idle connection has something to read: the peer closed it."""
    if sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class PlainSocketBackend(httpcore.AsyncNetworkBackend):
    """Opens :class:`PlainSocketStream` connections (plain TCP only)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[SocketOption] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        options = list(socket_options or ())
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                addresses = _interleaved([(f, t, p, a) for f, t, p, _, a in infos])
                sock = await _first_to_connect(addresses, local_address, options)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        try:
            guard.check_connected(sock.getpeername(), host)
        except (guard.ConnectRefused, OSError):
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return PlainSocketStream(sock)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[SocketOption] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("fetcher does not connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _interleaved(addresses: list[Address]) -> list[Address]:
    """The resolver's order, alternating address families (RFC 8305, section 4)."""
    families: dict[int, list[Address]] = {}
    for address in addresses:
        families.setdefault(address[0], []).append(address)
    queues = list(families.values())
    result: list[Address] = []
    while any(queues):
        for queue in queues:
            if queue:
                result.append(queue.pop(0))
    return result


async def _connect(address: Address, local_address: str | None,
                   options: list[SocketOption]) -> socket.socket:
    family, kind, proto, target = address
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        for option in options:
            sock.setsockopt(*option)
        if local_address:
            sock.bind((local_address, 0))
        await asyncio.get_running_loop().sock_connect(sock, target)
    except BaseException:
        sock.close()
        raise
    return sock


async def _first_to_connect(addresses: list[Address], local_address: str | None,
                            options: list[SocketOption]) -> socket.socket:
    """Start an attempt per address, each ATTEMPT_DELAY after the one before (or at
    once when it failed); the first connected socket wins, the others are closed."""
    if not addresses:
        raise OSError("the name resolved to no address")
    pending: set[asyncio.Task[socket.socket]] = set()
    errors: list[OSError] = []
    queue = list(addresses)
    try:
        while queue or pending:
            if queue:
                pending.add(asyncio.ensure_future(_connect(queue.pop(0), local_address,
                                                           options)))
            done, pending = await asyncio.wait(
                pending, timeout=ATTEMPT_DELAY if queue else None,
                return_when=asyncio.FIRST_COMPLETED)
            connected = [task.result() for task in done if task.exception() is None]
            for extra in connected[1:]:
                extra.close()
            if connected:
                return connected[0]
            for task in done:
                error = task.exception()
                if not isinstance(error, OSError):
                    raise typing.cast(BaseException, error)
                errors.append(error)
        raise errors[-1]
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                sock = await task
                sock.close()


def use_plain_sockets(transport: httpx.AsyncHTTPTransport) -> bool:
    """Make *transport* connect with :class:`PlainSocketBackend` (use it for ``http://``
    only); False, and the transport unchanged, when httpx's private names moved."""
    return replace_backend(transport, lambda _: PlainSocketBackend())
