"""A fast loopback file server for the benchmarks: HTTP/1.1 keep-alive, Range, ETag,
bodies sent with sendfile(2) so the server is not what is measured."""

from __future__ import annotations

import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as real servers set it: with Nagle on, a body sent after its headers
    # waits for the client's delayed ACK (40 ms per request on a kept-alive connection).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        self.server.requests += 1
        name = self.path.split("?", 1)[0].lstrip("/")
        path = self.server.root / name
        if "/" in name or not path.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = path.stat().st_size
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        status = 200
        if match and int(match.group(1)) < size:
            start, status = int(match.group(1)), 206
        self.send_response(status)
        self.send_header("Content-Type", "audio/mpeg")
        self.send_header("Content-Length", str(size - start))
        self.send_header("ETag", f'"{size:x}-{int(path.stat().st_mtime):x}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        self.wfile.flush()
        with path.open("rb") as file:
            offset, remaining = start, size - start
            while remaining:
                sent = os.sendfile(self.connection.fileno(), file.fileno(), offset, remaining)
                if sent == 0:
                    break
                offset += sent
                remaining -= sent


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.requests = 0


class FileServer:
    def __init__(self, root: Path):
        self._server = _Server(root)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{name}"

    @property
    def requests(self) -> int:
        return self._server.requests
