"""A small forward HTTP proxy on 127.0.0.1 for the tests: absolute-form requests for
``http://`` URLs and ``CONNECT`` tunnels for ``https://`` ones, each logged."""

from __future__ import annotations

import contextlib
import select
import socket
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit

from support.httpserver import QuietHandler, Running


class _Handler(QuietHandler):
    server: _ProxyServer

    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        self.server.seen.append(("CONNECT", self.path))
        try:
            upstream = socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            self.send_error(502)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self._pipe(self.connection, upstream)
        self.close_connection = True

    def do_GET(self) -> None:
        self.server.seen.append(("GET", self.path))
        target = urlsplit(self.path)
        if target.scheme != "http" or not target.hostname:
            self.send_error(400, "absolute http:// URL expected")
            return
        try:
            upstream = socket.create_connection((target.hostname, target.port or 80), timeout=5)
        except OSError:
            self.send_error(502)
            return
        path = target.path + (f"?{target.query}" if target.query else "")
        lines = [f"GET {path or '/'} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()
                  if k.lower() not in ("proxy-connection", "connection")]
        lines.append("Connection: close")
        try:
            upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            # The upstream's whole answer, then this connection ends (the client
            # connects again for its next request).
            with contextlib.suppress(OSError):
                while chunk := upstream.recv(1 << 16):
                    self.connection.sendall(chunk)
        finally:
            upstream.close()
        self.close_connection = True

    @staticmethod
    def _pipe(left: socket.socket, right: socket.socket) -> None:
        try:
            with contextlib.suppress(OSError):
                while True:
                    ready, _, _ = select.select([left, right], [], [], 5)
                    if not ready:
                        return
                    for source in ready:
                        data = source.recv(1 << 16)
                        if not data:
                            return
                        (right if source is left else left).sendall(data)
        finally:
            right.close()


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str]] = []


class TestProxy(Running):
    """``with TestProxy() as proxy``: ``proxy.url`` to configure, ``proxy.seen`` to check."""

    __test__ = False

    def __init__(self) -> None:
        self._server: _ProxyServer = _ProxyServer()
        super().__init__(self._server)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def seen(self) -> list[tuple[str, str]]:
        return list(self._server.seen)
