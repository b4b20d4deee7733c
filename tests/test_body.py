"""Large bodies read straight from the socket (fetcher.net.body) over bare sockets
(fetcher.net.sockets), against the real loopback server with faults injected."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import httpcore
import httpx
import pytest
from support.downloads import FAST, fetch, fetch_in_turn
from support.httpserver import TestServer
from support.mp3factory import mp3_bytes

from fetcher.errors import IncompleteDownloadError
from fetcher.events import Advanced, Event, Retrying
from fetcher.net import body, sockets
from fetcher.net.client import make_client
from fetcher.net.download import Downloader, DownloadRequest
from fetcher.settings import DownloadSettings
from fetcher.staging import sidecar_path

BIG = mp3_bytes(80_000, seed=5)  # about 1.25 MB: well above DIRECT_MIN_BYTES


@pytest.fixture
def direct_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the bodies read directly (their bytes still on the wire when it began)."""
    seen: list[int] = []
    original = body.read_rest

    async def counted(direct: body.DirectBody, *args: object, **kwargs: object) -> body.Result:
        seen.append(direct.remaining)
        return await original(direct, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("fetcher.net.download.read_rest", counted)
    return seen


def test_http_urls_use_bare_sockets_and_https_keeps_httpcores_backend() -> None:
    client = make_client(DownloadSettings())
    try:
        plain = client._transport_for_url(httpx.URL("http://example.com/"))
        tls = client._transport_for_url(httpx.URL("https://example.com/"))
        assert isinstance(plain._pool._network_backend,  # type: ignore[attr-defined]
                          sockets.PlainSocketBackend)
        assert not isinstance(tls._pool._network_backend,  # type: ignore[attr-defined]
                              sockets.PlainSocketBackend)
    finally:
        asyncio.run(client.aclose())


def test_large_body_is_read_directly_and_its_connection_serves_the_next(
        server: TestServer, tmp_path: Path, direct_reads: list[int]) -> None:
    server.add("/big.mp3", body=BIG)
    server.add("/big2.mp3", body=BIG)
    events: list[Event] = []
    result = fetch(server, "/big.mp3", tmp_path / "a.part", expected=len(BIG), events=events)
    assert (tmp_path / "a.part").read_bytes() == BIG and result.size == len(BIG)
    assert len(direct_reads) == 1 and 0 < direct_reads[0] < len(BIG)
    assert sum(e.bytes for e in events if isinstance(e, Advanced)) == len(BIG)
    fetch_in_turn(server, ["/big.mp3", "/big2.mp3"], tmp_path, len(BIG))
    assert len(direct_reads) == 3
    assert (tmp_path / "0.part").read_bytes() == BIG == (tmp_path / "1.part").read_bytes()
    first, second = server.requests_to("/big.mp3")[1], server.requests_to("/big2.mp3")[0]
    assert first.connection == second.connection  # h11 was told the body had ended


def test_a_direct_body_that_timed_out_never_lends_its_connection(
        server: TestServer, tmp_path: Path, direct_reads: list[int]) -> None:
    # The server keeps that connection open and sends the rest later: were it reused,
    # those late bytes would be read as the next answer.
    server.add("/stall.mp3", body=BIG, stall_after=[600_000], stall_seconds=1.5)
    server.add("/next.mp3", body=BIG)
    settings = DownloadSettings(retries=2, backoff=0.01, timeout=0.5)
    fetch_in_turn(server, ["/stall.mp3", "/next.mp3"], tmp_path, len(BIG), settings)
    assert (tmp_path / "0.part").read_bytes() == BIG == (tmp_path / "1.part").read_bytes()
    stalled, resumed = server.requests_to("/stall.mp3")
    assert resumed.headers["range"] == "bytes=600000-"
    later = server.requests_to("/next.mp3")[0]
    assert stalled.connection not in (resumed.connection, later.connection)
    assert resumed.connection == later.connection  # that body ended whole


def test_small_body_stays_on_httpx_and_keeps_its_connection(
        server: TestServer, tmp_path: Path, direct_reads: list[int]) -> None:
    small = mp3_bytes(2_000, seed=2)
    server.add("/s1.mp3", body=small)
    server.add("/s2.mp3", body=small)

    fetch_in_turn(server, ["/s1.mp3", "/s2.mp3"], tmp_path, len(small))
    assert direct_reads == []
    assert server.requests_to("/s1.mp3")[0].connection == \
        server.requests_to("/s2.mp3")[0].connection


def test_bytes_that_arrived_before_a_stall_are_kept_for_the_resume(
        server: TestServer, tmp_path: Path, direct_reads: list[int]) -> None:
    server.add("/stall.mp3", body=BIG, stall_after=[600_000], stall_seconds=3)
    events: list[Event] = []
    settings = DownloadSettings(retries=2, backoff=0.01, timeout=0.5)
    fetch(server, "/stall.mp3", tmp_path / "s.part", expected=len(BIG), settings=settings,
          events=events)
    assert (tmp_path / "s.part").read_bytes() == BIG
    assert direct_reads and any(isinstance(e, Retrying) for e in events)
    # Every byte received before the read timed out was written: the resume starts there.
    second = server.requests_to("/stall.mp3")[1]
    assert second.headers["range"] == "bytes=600000-" and second.status == 206


def test_a_reset_mid_body_resumes(server: TestServer, tmp_path: Path,
                                  direct_reads: list[int]) -> None:
    server.add("/reset.mp3", body=BIG, reset_after=[700_000])
    fetch(server, "/reset.mp3", tmp_path / "r.part", expected=len(BIG))
    assert (tmp_path / "r.part").read_bytes() == BIG
    assert direct_reads and server.requests_to("/reset.mp3")[1].status == 206


def test_too_slow_is_given_up_and_what_arrived_is_kept(
        server: TestServer, tmp_path: Path, direct_reads: list[int]) -> None:
    server.add("/slow.mp3", body=BIG, drip_delay=0.02, drip_size=4096)
    settings = DownloadSettings(retries=0, timeout=2.0, min_speed=1_000_000, speed_window=0.5)
    partial = tmp_path / "slow.part"
    with pytest.raises(IncompleteDownloadError, match="too slow"):
        fetch(server, "/slow.mp3", partial, expected=len(BIG), settings=settings)
    assert direct_reads
    kept = partial.read_bytes()
    assert 4096 <= len(kept) < len(BIG) and BIG.startswith(kept)
    assert sidecar_path(partial).exists()  # the validators for the resume


def test_cancelling_stops_the_reader_thread_and_keeps_the_bytes(
        server: TestServer, tmp_path: Path, direct_reads: list[int]) -> None:
    server.add("/drip.mp3", body=BIG, drip_delay=0.01, drip_size=16384)
    partial = tmp_path / "c.part"
    advanced: list[int] = []

    async def run() -> None:
        reading_directly = asyncio.Event()

        def seen(event: Event) -> None:
            if isinstance(event, Advanced):
                advanced.append(event.bytes)
                if direct_reads:
                    reading_directly.set()

        async with Downloader(FAST, on_event=seen) as downloader:
            task = asyncio.create_task(downloader.fetch(
                DownloadRequest("ep", server.url("/drip.mp3"), partial, len(BIG))))
            await reading_directly.wait()
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(run())
    assert not [t for t in threading.enumerate() if t.name.startswith("fetcher-body")]
    kept = partial.read_bytes()
    assert len(kept) > 16384 and BIG.startswith(kept)
    assert sum(advanced) == len(kept)


def test_interleaved_addresses_alternate_families() -> None:
    six = [(socket.AF_INET6, 1, 6, (f"::{i}", 80, 0, 0)) for i in range(1, 4)]
    four = [(socket.AF_INET, 1, 6, (f"10.0.0.{i}", 80)) for i in range(1, 3)]
    order = sockets._interleaved([*six, *four])
    assert [a[0] for a in order] == [socket.AF_INET6, socket.AF_INET] * 2 + [socket.AF_INET6]


def test_connect_falls_through_a_refused_address_and_reports_a_refusal(
        server: TestServer) -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    closed_port = free.getsockname()[1]
    free.close()

    async def run() -> None:
        backend = sockets.PlainSocketBackend()
        addresses = [
            (socket.AF_INET, socket.SOCK_STREAM, 6, ("127.0.0.1", closed_port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, ("127.0.0.1", server.port)),
        ]
        sock = await sockets._first_to_connect(addresses, None, [])
        assert sock.getpeername()[1] == server.port
        sock.close()
        with pytest.raises(httpcore.ConnectError):
            await backend.connect_tcp("127.0.0.1", closed_port, timeout=2)

    asyncio.run(run())
