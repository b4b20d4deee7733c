"""The downloader against a real HTTP/1.1 server on 127.0.0.1 with scripted faults."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import socket
import time
from pathlib import Path

import pytest
from support.downloads import FAST, fetch
from support.httpserver import TestServer
from support.mp3factory import id3v1_tag, id3v2_tag, mp3_bytes, text_frame_v23

from fetcher.audio import id3v2_size, payload_sha256
from fetcher.errors import (
    DownloadError,
    HostUnreachableError,
    HTTPStatusError,
    IncompleteDownloadError,
    NotAudioError,
    RedirectError,
    SizeMismatchError,
)
from fetcher.events import Advanced, Event, Finished, Retrying, Started
from fetcher.net.download import Downloader, DownloadRequest
from fetcher.settings import DownloadSettings
from fetcher.staging import Downloaded, sidecar_path

AUDIO = mp3_bytes(3_000, seed=1)  # 47 kB

# Every test here runs on both body paths (see the body_path fixture).
pytestmark = pytest.mark.usefixtures("body_path")


@pytest.fixture
def partial(tmp_path: Path) -> Path:
    return tmp_path / "partial" / "ep.mp3.part"


def test_plain_download_is_verified_and_hashed(server: TestServer, partial: Path) -> None:
    route = server.add("/a.mp3", body=AUDIO)
    events: list[Event] = []
    result = fetch(server, "/a.mp3", partial, expected=len(AUDIO), events=events)
    assert partial.read_bytes() == AUDIO
    assert result.size == len(AUDIO) and result.resumed_from == 0
    assert result.audio_sha256 == hashlib.sha256(AUDIO).hexdigest()
    assert result.etag == route.etag
    request = server.requests_to("/a.mp3")[0]
    assert request.headers["accept-encoding"] == "identity"
    assert request.headers["user-agent"].startswith("fetcher/")
    assert isinstance(events[0], Started) and isinstance(events[-1], Finished)
    assert sum(e.bytes for e in events if isinstance(e, Advanced)) == len(AUDIO)


def test_payload_hash_skips_id3v2_and_id3v1(server: TestServer, partial: Path) -> None:
    tagged = id3v2_tag(text_frame_v23("TIT2", "host title"), padding=50) + AUDIO + id3v1_tag()
    server.add("/t.mp3", body=tagged)
    result = fetch(server, "/t.mp3", partial, expected=len(tagged))
    assert result.audio_sha256 == hashlib.sha256(AUDIO).hexdigest()
    assert payload_sha256(partial) == result.audio_sha256


def test_redirect_chain_is_followed(server: TestServer, partial: Path) -> None:
    server.add("/final.mp3", body=AUDIO)
    server.add("/cdn", redirect_to="/final.mp3", redirect_status=307)
    server.add("/host", redirect_to=server.url("/cdn"), redirect_status=301)
    server.add("/tracker", redirect_to="/host?token=abc")
    fetch(server, "/tracker", partial, expected=len(AUDIO))
    assert partial.read_bytes() == AUDIO
    assert [e.path for e in server.log] == ["/tracker", "/host", "/cdn", "/final.mp3"]


def test_too_many_redirects(server: TestServer, partial: Path) -> None:
    for i in range(12):
        server.add(f"/r{i}", redirect_to=f"/r{i + 1}")
    with pytest.raises(RedirectError, match="more than 10 redirects"):
        fetch(server, "/r0", partial)
    assert len(server.log) == 11
    assert not partial.exists()


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/x.mp3"])
def test_redirect_to_other_scheme_fails(server: TestServer, partial: Path, target: str) -> None:
    server.add("/evil", redirect_to=target)
    with pytest.raises(RedirectError, match="URL refused"):
        fetch(server, "/evil", partial)
    assert not partial.exists()


def test_dropped_connection_resumes_with_range(server: TestServer, partial: Path) -> None:
    route = server.add("/d.mp3", body=AUDIO, drop_after=[10_000])
    events: list[Event] = []
    result = fetch(server, "/d.mp3", partial, expected=len(AUDIO), events=events)
    assert partial.read_bytes() == AUDIO
    first, second = server.requests_to("/d.mp3")
    assert "range" not in first.headers
    assert second.headers["range"] == f"bytes={first.sent}-"
    assert second.headers["if-range"] == route.etag
    assert second.status == 206
    assert result.audio_sha256 == hashlib.sha256(AUDIO).hexdigest()
    assert any(isinstance(e, Retrying) for e in events)


def test_connection_reset_is_retried(server: TestServer, partial: Path) -> None:
    server.add("/r.mp3", body=AUDIO, reset_after=[0, 5_000])
    fetch(server, "/r.mp3", partial, expected=len(AUDIO))
    assert partial.read_bytes() == AUDIO
    assert len(server.requests_to("/r.mp3")) == 3


@pytest.mark.parametrize("status", [503, 429, 500, 502, 504, 408])
def test_transient_status_then_healthy(server: TestServer, partial: Path, status: int) -> None:
    server.add("/s.mp3", body=AUDIO, statuses=[status, status])
    fetch(server, "/s.mp3", partial, expected=len(AUDIO))
    assert partial.read_bytes() == AUDIO
    assert [e.status for e in server.requests_to("/s.mp3")] == [status, status, 200]


def test_retry_after_is_honoured(server: TestServer, partial: Path) -> None:
    server.add("/ra.mp3", body=AUDIO, statuses=[503], retry_after="1")
    events: list[Event] = []
    fetch(server, "/ra.mp3", partial, expected=len(AUDIO), events=events)
    waits = [e.wait for e in events if isinstance(e, Retrying)]
    assert waits == [1.0]


def test_transient_failures_give_up_after_the_retries(server: TestServer, partial: Path) -> None:
    server.add("/down.mp3", body=AUDIO, statuses=[503] * 10)
    with pytest.raises(HTTPStatusError, match="HTTP 503"):
        fetch(server, "/down.mp3", partial, expected=len(AUDIO))
    assert len(server.requests_to("/down.mp3")) == FAST.retries + 1


@pytest.mark.parametrize("status", [404, 410, 403, 401])
def test_permanent_errors_fail_at_once(server: TestServer, partial: Path, status: int) -> None:
    server.add("/gone.mp3", body=AUDIO, statuses=[status])
    with pytest.raises(HTTPStatusError, match=f"HTTP {status}"):
        fetch(server, "/gone.mp3", partial)
    assert len(server.requests_to("/gone.mp3")) == 1
    assert not partial.exists()


def test_html_page_with_200_is_not_audio(server: TestServer, partial: Path) -> None:
    server.add("/page", body=b"<!DOCTYPE html><html><body>Sorry</body></html>",
               content_type="text/html")
    with pytest.raises(NotAudioError, match="not audio: the server sent an HTML page"):
        fetch(server, "/page", partial)
    assert not partial.exists() and not sidecar_path(partial).exists()


def test_body_shorter_than_content_length(server: TestServer, partial: Path) -> None:
    server.add("/short.mp3", body=AUDIO, short_by=1000)
    with pytest.raises(IncompleteDownloadError):
        fetch(server, "/short.mp3", partial)
    assert partial.stat().st_size == len(AUDIO)  # kept for resume, never committed


def test_server_ignoring_range_starts_over(server: TestServer, partial: Path) -> None:
    server.add("/ir.mp3", body=AUDIO, ignore_range=True, drop_after=[20_000])
    result = fetch(server, "/ir.mp3", partial, expected=len(AUDIO))
    assert partial.read_bytes() == AUDIO
    assert [e.status for e in server.requests_to("/ir.mp3")] == [200, 200]
    assert result.audio_sha256 == hashlib.sha256(AUDIO).hexdigest()


def test_changed_file_on_server_starts_over(server: TestServer, partial: Path) -> None:
    server.add("/c.mp3", body=AUDIO, drop_after=[10_000])
    with pytest.raises(IncompleteDownloadError):
        fetch(server, "/c.mp3", partial, settings=DownloadSettings(retries=0))
    newer = mp3_bytes(3_000, seed=2)
    server.add("/c.mp3", body=newer, last_modified="Wed, 01 Jan 2025 00:00:00 GMT")
    fetch(server, "/c.mp3", partial, expected=len(newer))
    assert partial.read_bytes() == newer
    assert server.requests_to("/c.mp3")[-1].status == 200


def test_wrong_range_offset_starts_over(server: TestServer, partial: Path) -> None:
    server.add("/w.mp3", body=AUDIO, drop_after=[10_000], wrong_range_offset=5)
    fetch(server, "/w.mp3", partial, expected=len(AUDIO))
    assert partial.read_bytes() == AUDIO
    statuses = [e.status for e in server.requests_to("/w.mp3")]
    assert statuses == [200, 206, 200]


def test_partial_survives_a_failed_run_and_resumes_next_run(
    server: TestServer, partial: Path
) -> None:
    server.add("/p.mp3", body=AUDIO, drop_after=[30_000])
    with pytest.raises(IncompleteDownloadError):
        fetch(server, "/p.mp3", partial, settings=DownloadSettings(retries=0))
    assert partial.stat().st_size == 30_000
    assert json.loads(sidecar_path(partial).read_text())["total"] == len(AUDIO)
    result = fetch(server, "/p.mp3", partial, expected=len(AUDIO))
    assert result.resumed_from == 30_000
    assert server.requests_to("/p.mp3")[-1].headers["range"] == "bytes=30000-"
    assert partial.read_bytes() == AUDIO
    assert result.audio_sha256 == hashlib.sha256(AUDIO).hexdigest()


def test_complete_partial_needs_no_body(server: TestServer, partial: Path) -> None:
    server.add("/full.mp3", body=AUDIO)
    fetch(server, "/full.mp3", partial, expected=len(AUDIO))
    server.reset_stats()
    result = fetch(server, "/full.mp3", partial, expected=len(AUDIO))
    assert server.log == []
    assert result.size == len(AUDIO) and result.resumed_from == len(AUDIO)


def test_a_verified_body_is_trusted_only_while_its_audio_hashes_the_same(
        server: TestServer, partial: Path) -> None:
    # The verified marker is written before the body is fsynced (the file is fsynced
    # once, tagged): after a power cut it can outlive the body's bytes.
    from fetcher.staging import mark_verified

    server.add("/v.mp3", body=AUDIO)
    mark_verified(fetch(server, "/v.mp3", partial, expected=len(AUDIO)))
    server.reset_stats()
    again = fetch(server, "/v.mp3", partial, expected=len(AUDIO))
    assert server.log == [] and again.audio_sha256 == hashlib.sha256(AUDIO).hexdigest()

    data = bytearray(partial.read_bytes())
    data[len(data) // 2] ^= 0xFF  # what a power cut can leave of unsynced pages
    partial.write_bytes(bytes(data))
    result = fetch(server, "/v.mp3", partial, expected=len(AUDIO))
    assert [e.status for e in server.requests_to("/v.mp3")] == [200]
    assert partial.read_bytes() == AUDIO
    assert result.audio_sha256 == hashlib.sha256(AUDIO).hexdigest()


def test_416_at_the_end_counts_as_complete(server: TestServer, partial: Path) -> None:
    server.add("/e.mp3", body=AUDIO)
    fetch(server, "/e.mp3", partial)  # size unknown to the document
    sidecar = sidecar_path(partial)
    data = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps(dict(data, total=None)))
    result = fetch(server, "/e.mp3", partial)
    assert server.requests_to("/e.mp3")[-1].status == 416
    assert result.size == len(AUDIO)


def test_gzip_only_when_asked_so_identity_is_served(server: TestServer, partial: Path) -> None:
    server.add("/g.mp3", body=AUDIO, gzip_when_asked=True)
    fetch(server, "/g.mp3", partial, expected=len(AUDIO))
    assert partial.read_bytes() == AUDIO


def test_gzip_forced_on_us_fails(server: TestServer, partial: Path) -> None:
    server.add("/gz.mp3", body=AUDIO, gzip_always=True)
    with pytest.raises(DownloadError, match="Content-Encoding gzip although identity"):
        fetch(server, "/gz.mp3", partial)
    assert not partial.exists()


def test_chunked_encoding(server: TestServer, partial: Path) -> None:
    server.add("/ch.mp3", body=AUDIO, chunked=True)
    result = fetch(server, "/ch.mp3", partial, expected=len(AUDIO))
    assert partial.read_bytes() == AUDIO and result.size == len(AUDIO)


def test_slow_drip_completes(server: TestServer, partial: Path) -> None:
    small = mp3_bytes(500, seed=3)
    server.add("/drip.mp3", body=small, drip_delay=0.01, drip_size=512)
    fetch(server, "/drip.mp3", partial, expected=len(small))
    assert partial.read_bytes() == small


def test_stall_times_out_and_resumes(server: TestServer, partial: Path) -> None:
    server.add("/stall.mp3", body=AUDIO, stall_after=[8_000], stall_seconds=3)
    settings = DownloadSettings(retries=2, backoff=0.01, timeout=0.5)
    fetch(server, "/stall.mp3", partial, expected=len(AUDIO), settings=settings)
    assert partial.read_bytes() == AUDIO
    second = server.requests_to("/stall.mp3")[1]
    assert second.headers["range"].startswith("bytes=") and second.status == 206


def test_body_longer_than_document_is_cut_off(server: TestServer, partial: Path) -> None:
    server.add("/long.mp3", body=AUDIO, chunked=True)
    with pytest.raises(SizeMismatchError, match="sent more than 40000; cut off"):
        fetch(server, "/long.mp3", partial, expected=40_000)
    assert not partial.exists()


def test_announced_size_differs_from_document(server: TestServer, partial: Path) -> None:
    server.add("/diff.mp3", body=AUDIO)
    with pytest.raises(SizeMismatchError, match="expected 40000 bytes, the server announces"):
        fetch(server, "/diff.mp3", partial, expected=40_000)
    assert not partial.exists()


def test_size_mismatch_accept_records_a_discrepancy(server: TestServer, partial: Path) -> None:
    server.add("/acc.mp3", body=AUDIO)
    settings = DownloadSettings(size_mismatch="accept", retries=0)
    result = fetch(server, "/acc.mp3", partial, expected=40_000, settings=settings)
    assert result.size_discrepancy and result.size == len(AUDIO)
    assert partial.read_bytes() == AUDIO


def test_query_string_never_appears_in_errors(server: TestServer, partial: Path) -> None:
    server.add("/private.mp3", body=AUDIO, statuses=[404])
    with pytest.raises(HTTPStatusError) as info:
        fetch(server, "/private.mp3", partial, url=server.url("/private.mp3?token=SECRET"))
    assert "SECRET" not in str(info.value)
    assert "/private.mp3?<redacted>" in str(info.value)


def test_global_and_per_host_limits_hold(server: TestServer, tmp_path: Path) -> None:
    for i in range(8):
        server.add(f"/c{i}.mp3", body=AUDIO, drip_delay=0.005, drip_size=8192)
    settings = DownloadSettings(jobs=3, per_host=2, retries=0)

    async def run() -> list[Downloaded]:
        async with Downloader(settings) as downloader:
            hosts = ["127.0.0.1", "localhost"]
            return await asyncio.gather(
                *(
                    downloader.fetch(
                        DownloadRequest(
                            f"ep{i}", server.url(f"/c{i}.mp3", hosts[i % 2]),
                            tmp_path / f"{i}.part", len(AUDIO),
                        )
                    )
                    for i in range(8)
                )
            )

    results = asyncio.run(run())
    assert all(r.size == len(AUDIO) for r in results)
    # Limits are upper bounds; how close a run comes to them depends on scheduling.
    assert 2 <= server.peak_concurrency <= 3
    assert 1 <= server.peak_per_host <= 2


def test_one_host_gets_the_jobs_asked_for_up_to_four_by_default(
        server: TestServer, tmp_path: Path) -> None:
    assert DownloadSettings().per_host == 4  # jobs bound it too; polite to one CDN
    for i in range(6):
        server.add(f"/h{i}.mp3", body=AUDIO, drip_delay=0.01, drip_size=4096)
    settings = DownloadSettings(jobs=3, retries=0)

    async def run() -> None:
        async with Downloader(settings) as downloader:
            await asyncio.gather(*(downloader.fetch(DownloadRequest(
                f"ep{i}", server.url(f"/h{i}.mp3"), tmp_path / f"{i}.part", len(AUDIO)))
                for i in range(6)))

    asyncio.run(run())
    # Slow bodies keep the three jobs busy at once; all of them on the one host.
    assert server.peak_per_host == 3


def test_unreachable_host_fails_the_rest_of_the_run_at_once(tmp_path: Path) -> None:
    # Port 9 on loopback: nothing listens, so every connect is refused.
    settings = DownloadSettings(retries=2, backoff=0.01, jobs=1)
    events: list[Event] = []

    async def run() -> list[BaseException | Downloaded]:
        async with Downloader(settings, on_event=events.append) as downloader:
            return await asyncio.gather(
                *(
                    downloader.fetch(DownloadRequest(f"ep{i}", "http://127.0.0.1:9/a.mp3",
                                                     tmp_path / f"{i}.part"))
                    for i in range(3)
                ),
                return_exceptions=True,
            )

    results = asyncio.run(run())
    assert all(isinstance(r, DownloadError) for r in results)
    assert "cannot connect" in str(results[0])
    assert all("host unreachable earlier in this run" in str(r) for r in results[1:])
    assert [e.key for e in events if isinstance(e, Retrying)] == ["ep0", "ep0"]


def test_reserve_leaves_an_empty_tag_ahead_of_the_body(server: TestServer, partial: Path) -> None:
    server.add("/res.mp3", body=AUDIO, drop_after=[10_000])
    with pytest.raises(IncompleteDownloadError):
        fetch_reserved(server, "/res.mp3", partial, 4096, retries=0)
    assert partial.stat().st_size == 4096 + 10_000
    result = fetch_reserved(server, "/res.mp3", partial, 4096, retries=1)
    assert server.requests_to("/res.mp3")[-1].headers["range"] == "bytes=10000-"
    data = partial.read_bytes()
    assert data[:3] == b"ID3" and id3v2_size(data[:10]) == 4096
    assert data[4096:] == AUDIO and result.reserve == 4096 and result.size == len(AUDIO)
    assert result.audio_sha256 == hashlib.sha256(AUDIO).hexdigest()


def fetch_reserved(server: TestServer, path: str, partial: Path, reserve: int,
                   retries: int) -> Downloaded:
    async def run() -> Downloaded:
        settings = DownloadSettings(retries=retries, backoff=0.01)
        async with Downloader(settings) as downloader:
            return await downloader.fetch(
                DownloadRequest("ep", server.url(path), partial, len(AUDIO), reserve=reserve)
            )

    return asyncio.run(run())


# --- which hosts count as unreachable, redirects, long Retry-After -------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fetch_many(requests: list[DownloadRequest],
               settings: DownloadSettings = FAST) -> list[Downloaded | BaseException]:
    async def run() -> list[Downloaded | BaseException]:
        results: list[Downloaded | BaseException] = []
        async with Downloader(settings) as downloader:
            for request in requests:  # in turn: each one sees what the last one learnt
                try:
                    results.append(await downloader.fetch(request))
                except Exception as error:
                    results.append(error)
        return results

    return asyncio.run(run())


def test_a_dead_port_does_not_block_another_port_of_the_same_host(
    server: TestServer, tmp_path: Path
) -> None:
    server.add("/a.mp3", body=AUDIO)
    dead = f"http://127.0.0.1:{closed_port()}/x.mp3"
    first, again, alive = fetch_many([
        DownloadRequest("dead", dead, tmp_path / "1.part", reserve=4096),
        DownloadRequest("dead-again", dead, tmp_path / "2.part", reserve=4096),
        DownloadRequest("alive", server.url("/a.mp3"), tmp_path / "3.part", len(AUDIO)),
    ])
    assert isinstance(first, IncompleteDownloadError) and "cannot connect" in str(first)
    assert isinstance(again, HostUnreachableError)
    assert isinstance(alive, Downloaded) and alive.size == len(AUDIO)
    # Nothing arrived for the dead ones: no reserve-sized partial file stays behind.
    assert not (tmp_path / "1.part").exists() and not (tmp_path / "2.part").exists()


def test_an_unreachable_redirect_target_does_not_mark_the_redirector(
    server: TestServer, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/x.mp3"
    server.add("/hop.mp3", redirect_to=dead)
    server.add("/a.mp3", body=AUDIO)
    hop, direct, alive = fetch_many([
        DownloadRequest("hop", server.url("/hop.mp3"), tmp_path / "1.part"),
        DownloadRequest("direct", dead, tmp_path / "2.part"),
        DownloadRequest("alive", server.url("/a.mp3"), tmp_path / "3.part", len(AUDIO)),
    ])
    assert isinstance(hop, IncompleteDownloadError)
    assert isinstance(direct, HostUnreachableError)  # the target was marked
    assert isinstance(alive, Downloaded)  # the redirector was not


def test_a_redirect_keeps_its_connection(server: TestServer, partial: Path) -> None:
    server.add("/hop.mp3", redirect_to="/a.mp3")
    server.add("/a.mp3", body=AUDIO)
    fetch(server, "/hop.mp3", partial, expected=len(AUDIO))
    hop, = server.requests_to("/hop.mp3")
    target, = server.requests_to("/a.mp3")
    assert hop.connection == target.connection


def test_a_day_long_retry_after_ends_the_retries_at_once(
    server: TestServer, partial: Path
) -> None:
    server.add("/busy.mp3", body=AUDIO, statuses=[503] * 5, retry_after="86400")
    settings = dataclasses.replace(FAST, max_retry_wait=5.0)
    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        fetch(server, "/busy.mp3", partial, settings=settings)
    assert time.monotonic() - started < 5
    assert "retry after 86400 s" in str(caught.value) and "max_retry_wait" in str(caught.value)
    assert len(server.requests_to("/busy.mp3")) == 1


def test_retry_after_waits_add_up_to_the_bound(server: TestServer, partial: Path) -> None:
    server.add("/busy.mp3", body=AUDIO, statuses=[503] * 3, retry_after="1")
    settings = dataclasses.replace(FAST, max_retry_wait=1.5, retries=5)
    with pytest.raises(DownloadError) as caught:
        fetch(server, "/busy.mp3", partial, settings=settings)
    assert "more than the 2 s allowed" in str(caught.value)  # 1 s waited, 0.5 s left
    assert len(server.requests_to("/busy.mp3")) == 2
