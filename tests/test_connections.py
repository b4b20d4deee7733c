"""How fetcher connects, against real servers on 127.0.0.1: HTTPS (a self-signed
certificate in tests/fixtures/tls, trusted through ``[download] ca_file``), the address
guard applied where connections are made, and a forward proxy (absolute-form requests
and CONNECT tunnels, tests/support/proxy.py)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.downloads import FAST, fetch, fetch_in_turn
from support.httpserver import TLS_CERT, TestServer
from support.mp3factory import mp3_bytes

from fetcher.errors import DownloadError, HostUnreachableError
from fetcher.net import client
from fetcher.net.download import Downloader, DownloadRequest
from fetcher.settings import DownloadSettings
from fetcher.staging import Downloaded

BIG = mp3_bytes(60_000, seed=9)  # about 0.9 MB


@pytest.fixture
def tls_server() -> Iterator[TestServer]:
    with TestServer(tls=True) as running:
        yield running


@pytest.fixture
def trust_test_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    """fetcher's one TLS context, trusting only the test certificate."""
    context = ssl.create_default_context(cafile=str(TLS_CERT))
    monkeypatch.setattr(client, "_tls_context", lambda ca_file=None: context)


@pytest.mark.usefixtures("trust_test_certificate")
def test_https_body_arrives_whole_and_resumes_after_a_drop(
        tls_server: TestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    direct: list[object] = []
    monkeypatch.setattr("fetcher.net.download.read_rest",
                        lambda *args, **kwargs: direct.append(args))
    tls_server.add("/a.mp3", body=BIG, drop_after=[400_000])
    assert tls_server.url("/a.mp3").startswith("https://")
    result = fetch(tls_server, "/a.mp3", tmp_path / "a.part", expected=len(BIG))
    assert (tmp_path / "a.part").read_bytes() == BIG and result.size == len(BIG)
    second = tls_server.requests_to("/a.mp3")[1]
    assert second.headers["range"].startswith("bytes=") and second.status == 206
    assert direct == []  # TLS bodies stay on httpx's path


@pytest.mark.usefixtures("trust_test_certificate")
def test_https_keeps_its_connection_between_episodes(tls_server: TestServer,
                                                     tmp_path: Path) -> None:
    small = mp3_bytes(3_000, seed=4)
    tls_server.add("/1.mp3", body=small)
    tls_server.add("/2.mp3", body=small)

    fetch_in_turn(tls_server, ["/1.mp3", "/2.mp3"], tmp_path, len(small))
    assert tls_server.requests_to("/1.mp3")[0].connection == \
        tls_server.requests_to("/2.mp3")[0].connection


def test_an_untrusted_certificate_is_refused_once_with_a_clear_error(
        tls_server: TestServer, tmp_path: Path) -> None:
    tls_server.add("/a.mp3", body=BIG)
    tls_server.add("/b.mp3", body=BIG)
    errors: list[DownloadError] = []

    async def run() -> None:
        async with Downloader(FAST) as downloader:  # retries allowed: none is made
            for name in ("a", "b"):
                try:
                    await downloader.fetch(DownloadRequest(
                        name, tls_server.url(f"/{name}.mp3"), tmp_path / f"{name}.part"))
                except DownloadError as error:
                    errors.append(error)

    asyncio.run(run())
    first, second = (str(e) for e in errors)
    assert "TLS certificate refused: self-signed certificate" in first
    assert "\n" not in first  # one line, for the report
    # One handshake: no retry, and the next episode from that origin fails at once.
    assert isinstance(errors[1], HostUnreachableError)
    assert "TLS certificate refused" in second
    assert tls_server.log == []  # no request was ever sent
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
@pytest.mark.usefixtures("trust_test_certificate")
def test_a_name_that_rebinds_to_loopback_is_refused_when_connecting(
        tls: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # DNS rebinding: the name answers with a public address when the URL is checked,
    # then with loopback when the connection is made. The address actually connected to
    # is checked too, before a byte of the request is sent.
    import ipaddress

    from fetcher.net import guard

    async def public(host: str, port: int) -> list[guard.IPAddress]:
        return [ipaddress.ip_address("93.184.216.34")]

    monkeypatch.setattr(guard, "addresses_of", public)
    with TestServer(tls=tls) as server:
        server.add("/a.mp3", body=BIG)

        async def run(trust: str) -> Downloaded:
            async with Downloader(FAST) as downloader:
                return await downloader.fetch(DownloadRequest(
                    "ep", server.url("/a.mp3"), tmp_path / f"{trust}.part", len(BIG),
                    trust=trust))

        with pytest.raises(DownloadError, match=r"private or loopback.*when connecting"):
            asyncio.run(run("remote"))
        assert server.log == []  # refused before the request was sent
        # A feed fetched from a private address lends its URLs that trust: allowed.
        assert asyncio.run(run("remote-private")).size == len(BIG)
        assert asyncio.run(run("own")).size == len(BIG)


def test_a_connection_made_for_your_own_url_never_serves_a_feeds_url(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The connect-time check runs once per connection: so a connection opened for a URL
    # of the user's own (to loopback, allowed) must not be reused for a feed-supplied URL
    # to the same origin, which may not reach loopback.
    import ipaddress

    from fetcher.net import guard

    async def public(host: str, port: int) -> list[guard.IPAddress]:
        return [ipaddress.ip_address("93.184.216.34")]

    monkeypatch.setattr(guard, "addresses_of", public)
    small = mp3_bytes(3_000, seed=4)
    with TestServer() as server:
        server.add("/mine.mp3", body=small)
        server.add("/theirs.mp3", body=small)

        async def run() -> None:
            async with Downloader(FAST) as downloader:
                await downloader.fetch(DownloadRequest(
                    "mine", server.url("/mine.mp3"), tmp_path / "mine.part", len(small)))
                await downloader.fetch(DownloadRequest(
                    "theirs", server.url("/theirs.mp3"), tmp_path / "theirs.part",
                    len(small), trust="remote"))

        with pytest.raises(DownloadError, match="when connecting"):
            asyncio.run(run())
        assert server.requests_to("/theirs.mp3") == []


def test_a_feed_over_https_from_a_private_ca_is_archived(tmp_path: Path) -> None:
    # End to end: `[download] ca_file` names the authority; the feed, its enclosure and
    # the tags all over TLS, the file read back by mutagen.
    from mutagen.id3 import ID3
    from support.feeds import item, rss

    import fetcher

    audio = mp3_bytes(5_000, seed=2)
    with TestServer(tls=True) as server:
        server.add("/a.mp3", body=audio)
        server.add("/feed.xml", body=rss(item("tls-1", server.url("/a.mp3"),
                                               title="Over TLS", length=len(audio))),
                   content_type="application/rss+xml")
        config_path = tmp_path / "fetcher.toml"
        config_path.write_text(
            f'[archive]\ndir = "{tmp_path / "archive"}"\n'
            f'[sources]\npaths = ["{server.url("/feed.xml")}"]\n'
            f'[download]\nca_file = "{TLS_CERT}"\nretries = 0\n[tags]\ncover = false\n',
            encoding="utf-8")
        report = fetcher.sync(fetcher.load_config(config_path))
    assert report.ok and report.count(fetcher.Status.DOWNLOADED) == 1
    archived = next(o.path for o in report.outcomes if o.path)
    assert str(ID3(archived)["TIT2"]) == "Over TLS"


def test_everything_goes_through_the_configured_proxy(tmp_path: Path) -> None:
    # `[download] proxy`: an http:// feed and its audio as absolute-form requests, an
    # https:// one through a CONNECT tunnel; the files arrive whole and tagged.
    from mutagen.id3 import ID3
    from support.feeds import item, rss
    from support.proxy import TestProxy

    import fetcher

    audio = mp3_bytes(5_000, seed=3)
    big = mp3_bytes(40_000, seed=4)  # large enough for the direct path, were it on
    with TestServer() as plain, TestServer(tls=True) as secure, TestProxy() as proxy:
        plain.add("/a.mp3", body=big)
        plain.add("/feed.xml", body=rss(item("p-1", plain.url("/a.mp3"), title="Plain")))
        secure.add("/b.mp3", body=audio)
        secure.add("/feed.xml", body=rss(item("s-1", secure.url("/b.mp3"), title="Secure"),
                                         title="Secure Show"))
        config_path = tmp_path / "fetcher.toml"
        config_path.write_text(
            f'[archive]\ndir = "{tmp_path / "archive"}"\n[sources]\npaths = '
            f'["{plain.url("/feed.xml")}", "{secure.url("/feed.xml")}"]\n'
            f'[download]\nca_file = "{TLS_CERT}"\nproxy = "{proxy.url}"\nretries = 0\n'
            "[tags]\ncover = false\n", encoding="utf-8")
        report = fetcher.sync(fetcher.load_config(config_path))
        seen = proxy.seen
    assert report.ok and report.count(fetcher.Status.DOWNLOADED) == 2
    assert ("GET", plain.url("/feed.xml")) in seen and ("GET", plain.url("/a.mp3")) in seen
    assert ("CONNECT", f"127.0.0.1:{secure.port}") in seen
    titles = {str(ID3(o.path)["TIT2"]) for o in report.outcomes if o.path}
    assert titles == {"Plain", "Secure"}
    sizes = sorted(o.path.stat().st_size for o in report.outcomes if o.path)
    assert sizes[1] > len(big)  # the big one whole, its tag in front


def test_a_proxy_that_is_down_is_one_clear_failure(tmp_path: Path) -> None:
    import socket as sockets

    free = sockets.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    settings = DownloadSettings(retries=0, timeout=2.0, proxy=f"http://127.0.0.1:{port}")
    with TestServer() as server:
        server.add("/a.mp3", body=BIG)
        with pytest.raises(DownloadError, match="cannot connect"):
            fetch(server, "/a.mp3", tmp_path / "a.part", expected=len(BIG), settings=settings)
        assert server.log == []


def test_a_proxy_must_be_an_http_url(tmp_path: Path) -> None:
    from fetcher.config import parse_config
    from fetcher.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[download.proxy\] must be an http:// proxy"):
        parse_config({"download": {"proxy": "socks5://u:secret@h:1080"}}, base=tmp_path)
    try:
        parse_config({"download": {"proxy": "ftp://u:secret@h"}}, base=tmp_path)
    except ConfigError as error:
        assert "secret" not in str(error)
    config = parse_config({"download": {"proxy": "http://proxy.lan:3128"}}, base=tmp_path)
    assert config.download.proxy == "http://proxy.lan:3128"
