"""A real HTTP/1.1 server on 127.0.0.1 for the tests, with scripted faults.

Each path is a :class:`Route`: a body served with Range, ETag, Last-Modified and
If-Range, plus faults the test switches on. One-shot faults are lists consumed one per
request, so "fail twice, then work" reads as ``statuses=[503, 503]``. Every request is
logged for assertions.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import socket
import socketserver
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "audio/mpeg"
    etag: str | None = None
    last_modified: str | None = field(
        default_factory=lambda: formatdate(1_700_000_000, usegmt=True)
    )
    #: Status codes answered (one per request) before the route works.
    statuses: list[int] = field(default_factory=list)
    retry_after: str | None = None
    #: Close the connection after sending this many body bytes (one per request).
    drop_after: list[int] = field(default_factory=list)
    #: Reset the connection (RST) after this many body bytes (one per request).
    reset_after: list[int] = field(default_factory=list)
    redirect_to: str | None = None
    redirect_status: int = 302
    #: A Set-Cookie header for the answer (a redirect's too).
    set_cookie: str | None = None
    ignore_range: bool = False
    gzip_when_asked: bool = False
    gzip_always: bool = False
    chunked: bool = False
    #: Declare a Content-Length this many bytes larger than what is sent, then close.
    short_by: int = 0
    #: Seconds to sleep between pieces of ``drip_size`` bytes.
    drip_delay: float = 0.0
    drip_size: int = 1024
    #: Send this many bytes, then stall for ``stall_seconds`` (one per request).
    stall_after: list[int] = field(default_factory=list)
    stall_seconds: float = 5.0
    #: Answer 206 at this offset whatever the Range asked for.
    wrong_range_offset: int | None = None
    #: Send this many extra header lines.
    header_flood: int = 0
    #: Stream the body again and again, chunked, until the client hangs up.
    endless: bool = False
    #: Answer If-None-Match / If-Modified-Since with 304 when they match.
    conditional: bool = False

    def __post_init__(self) -> None:
        if self.etag is None:
            self.etag = '"' + hashlib.sha1(self.body).hexdigest()[:16] + '"'


@dataclass
class Logged:
    path: str
    method: str
    headers: dict[str, str]
    status: int = 0
    sent: int = 0
    #: The client's port: requests with the same one came over one connection.
    connection: int = 0


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, TCP_NODELAY, and no log lines: the tests' servers."""

    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as real servers set it: with Nagle on, a body sent after its headers
    # waits for the client's delayed ACK (40 ms per request on a kept-alive connection).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Handler(QuietHandler):
    server: _Server

    def handle(self) -> None:
        # Clients that hang up (a cancelled download, a refused redirect) are normal here.
        with contextlib.suppress(ConnectionError, OSError):
            super().handle()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        entry = Logged(path, "GET", {k.lower(): v for k, v in self.headers.items()},
                       connection=self.client_address[1])
        with self.server.lock:
            self.server.log.append(entry)
            route = self.server.routes.get(path)
            self.server.active[self.headers.get("Host", "")] = (
                self.server.active.get(self.headers.get("Host", ""), 0) + 1
            )
            self.server.peak = max(self.server.peak, sum(self.server.active.values()))
            host_now = self.server.active[self.headers.get("Host", "")]
            self.server.peak_per_host = max(self.server.peak_per_host, host_now)
        self._counted = True
        try:
            self._serve(route, entry)
        finally:
            self._uncount()

    def _uncount(self) -> None:
        """Leave the concurrency count; done before the last body bytes go out, since a
        client that has them may start its next request before this thread runs on."""
        if self._counted:
            self._counted = False
            with self.server.lock:
                self.server.active[self.headers.get("Host", "")] -= 1

    def _pop(self, items: list[Any]) -> Any:
        with self.server.lock:
            return items.pop(0) if items else None

    def _serve(self, route: Route | None, entry: Logged) -> None:
        if route is None:
            return self._simple(entry, 404, b"not found")
        status = self._pop(route.statuses)
        if status is not None:
            extra = {"Retry-After": route.retry_after} if route.retry_after else {}
            return self._simple(entry, status, b"try later", extra)
        cookie = {"Set-Cookie": route.set_cookie} if route.set_cookie else {}
        if route.redirect_to is not None:
            return self._simple(entry, route.redirect_status, b"",
                                {"Location": route.redirect_to, **cookie})
        if route.conditional and (
            self.headers.get("If-None-Match") == route.etag
            or (self.headers.get("If-Modified-Since") == route.last_modified
                and "If-None-Match" not in self.headers)
        ):
            return self._simple(entry, 304, b"", {"ETag": route.etag or ""})

        body = route.body
        headers = {"Content-Type": route.content_type, "Accept-Ranges": "bytes"}
        if route.etag:
            headers["ETag"] = route.etag
        if route.last_modified:
            headers["Last-Modified"] = route.last_modified
        wants_gzip = "gzip" in self.headers.get("Accept-Encoding", "")
        if route.gzip_always or (route.gzip_when_asked and wants_gzip):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"

        status, start = 200, 0
        range_header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if range_header and not route.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-", range_header.strip())
            fresh = if_range is None or if_range in (route.etag, route.last_modified)
            if match and fresh:
                start = int(match.group(1))
                if start >= len(body):
                    return self._simple(
                        entry, 416, b"", {"Content-Range": f"bytes */{len(body)}"}
                    )
                status = 206
        if route.wrong_range_offset is not None and status == 206:
            start = route.wrong_range_offset
        payload = body[start:]
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        for index in range(route.header_flood):
            headers[f"X-Flood-{index}"] = "x" * 100

        entry.status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if route.chunked or route.endless:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(payload) + route.short_by))
        self.end_headers()

        if route.endless:
            self._uncount()
            try:
                while True:
                    self._send_body(route, payload, entry, None)
            except OSError:
                self.close_connection = True
            return
        limit = len(payload)
        drop = self._pop(route.drop_after)
        reset = self._pop(route.reset_after)
        stall = self._pop(route.stall_after)
        if route.short_by:
            drop = len(payload)
        cut = min(x for x in (drop, reset, limit) if x is not None)
        self._send_body(route, payload[:cut], entry, stall)
        if reset is not None and reset <= limit:
            # SO_LINGER 0 and a close without shutdown: the peer sees RST, not FIN.
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            os.close(self.connection.detach())
            self.close_connection = True
            return
        if drop is not None:
            self.close_connection = True
            return
        if route.chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _send_body(self, route: Route, data: bytes, entry: Logged, stall: int | None) -> None:
        piece = route.drip_size if route.drip_delay else 256 * 1024
        position = 0
        try:
            while position < len(data):
                if stall is not None and position >= stall:
                    time.sleep(route.stall_seconds)
                    stall = None
                end = min(position + piece, len(data))
                if stall is not None and position < stall < end:
                    end = stall
                chunk = data[position:end]
                if end == len(data):
                    self._uncount()
                if route.chunked or route.endless:
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                else:
                    self.wfile.write(chunk)
                position = end
                entry.sent = position
                if route.drip_delay:
                    time.sleep(route.drip_delay)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            if route.endless:
                raise

    def _simple(
        self, entry: Logged, status: int, body: bytes, extra: dict[str, str] | None = None
    ) -> None:
        entry.status = status
        self.send_response(status)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


#: A self-signed certificate for localhost and 127.0.0.1 (valid until 2125), for tests
#: of HTTPS: the client trusts it by loading this file as its only CA.
TLS_CERT = Path(__file__).resolve().parent.parent / "fixtures" / "tls" / "localhost.pem"
TLS_KEY = TLS_CERT.with_suffix(".key")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, tls: bool = False) -> None:
        self.tls: ssl.SSLContext | None = None
        if tls:
            self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls.load_cert_chain(TLS_CERT, TLS_KEY)
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.log: list[Logged] = []
        self.lock = threading.Lock()
        self.active: dict[str, int] = {}
        self.peak = 0
        self.peak_per_host = 0

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            # The handshake happens in the handler's thread, on its first read.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address


class Running:
    """A socketserver served from a thread of its own while in a ``with`` block."""

    def __init__(self, server: socketserver.BaseServer) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class TestServer(Running):
    """Start with ``with TestServer() as server``; ``server.url(path)`` names a route."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, *, tls: bool = False) -> None:
        self._server: _Server = _Server(tls)
        super().__init__(self._server)
        self.scheme = "https" if tls else "http"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def add(self, path: str, route: Route | None = None, **kwargs: Any) -> Route:
        route = route or Route(**kwargs)
        with self._server.lock:
            self._server.routes[path] = route
        return route

    @property
    def log(self) -> list[Logged]:
        with self._server.lock:
            return list(self._server.log)

    def requests_to(self, path: str) -> list[Logged]:
        return [entry for entry in self.log if entry.path == path]

    @property
    def peak_concurrency(self) -> int:
        return self._server.peak

    @property
    def peak_per_host(self) -> int:
        return self._server.peak_per_host

    def reset_stats(self) -> None:
        with self._server.lock:
            self._server.log.clear()
            self._server.peak = 0
            self._server.peak_per_host = 0
