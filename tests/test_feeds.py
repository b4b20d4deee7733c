"""Feeds end to end: the real feeds in tests/fixtures/feeds served on 127.0.0.1 with their
enclosures replaced by generated audio, read and archived by the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from mutagen.id3 import ID3
from support.feeds import FEEDS, encoded_audio, item, rss, serve_feed
from support.httpserver import TestServer
from support.mp3factory import mp3_bytes
from support.probe import ffprobe, ffprobe_chapters

ALL_FEEDS = sorted(p.relative_to(FEEDS).as_posix() for p in FEEDS.rglob("*.xml")
                   if not p.name.startswith("NOT-A-FEED"))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fetcher", *args], capture_output=True,
                          text=True, timeout=300)


def config(tmp_path: Path, *sources: str, **sections: dict[str, Any]) -> Path:
    data: dict[str, dict[str, Any]] = {
        "archive": {"dir": str(tmp_path / "archive")},
        "sources": {"paths": list(sources)},
        "download": {"retries": 1, "backoff": 0.01, "timeout": 5.0},
        "tags": {"cover": False},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    lines = []
    for name, values in data.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path = tmp_path / "fetcher.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sync_json(path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = cli("sync", "-c", str(path), "--json", *extra)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def items_in(body: bytes) -> int:
    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True)
    root = etree.fromstring(body.lstrip(), parser)
    return sum(1 for e in root.iter() if isinstance(e.tag, str) and e.tag == "item")


def audio_requests(server: TestServer) -> list[str]:
    return [e.path for e in server.log if "/audio/" in e.path]


@pytest.mark.parametrize("name", ALL_FEEDS)
def test_every_item_of_every_shared_feed_is_an_episode_or_a_reasoned_skip(
    server: TestServer, name: str
) -> None:
    served = serve_feed(server, name)
    result = cli("show", served.url, "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert len(entries) == items_in(served.body) > 0
    assert all(e["status"] in ("episode", "skipped") for e in entries)
    assert all(e["reason"] for e in entries if e["status"] == "skipped")
    episodes = [e for e in entries if e["status"] == "episode"]
    assert len({e["guid"] for e in episodes}) == len(episodes)
    if "MALFORMED" in name:
        assert "recovery mode" in result.stderr
        assert len(entries) > 100  # recovered, not lost


def test_an_html_page_or_a_pdf_is_refused_clearly(server: TestServer, tmp_path: Path) -> None:
    served = serve_feed(server, "NOT-A-FEED-html-response.xml", content_type="text/html")
    result = cli("sync", "-c", str(config(tmp_path, served.url)))
    assert result.returncode == 1 and "not a feed: an HTML page" in result.stderr
    assert "Traceback" not in result.stderr
    pdf = tmp_path / "feed.xml"
    pdf.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")
    result = cli("show", str(pdf))
    assert result.returncode == 1 and f"{pdf}: not an episode document" in result.stderr
    assert "a PDF document" in result.stderr


def test_a_local_feed_file_is_read_by_its_content_not_its_name(
    server: TestServer, tmp_path: Path
) -> None:
    served = serve_feed(server, "podlovers-podlove4.xml")
    named_like_notes = tmp_path / "notes.md"
    named_like_notes.write_bytes(served.body)
    result = cli("show", str(named_like_notes), "--json")
    assert result.returncode == 0, result.stderr
    assert [e["status"] for e in json.loads(result.stdout)] == ["episode", "episode"]


def test_a_podcasting20_feed_is_archived_with_chapters_and_transcripts(
    server: TestServer, tmp_path: Path
) -> None:
    served = serve_feed(server, "spec-examples/pi-namespace-example.xml",
                        declared_ms=6_200_000)
    path = config(tmp_path, served.url)
    code, summary = sync_json(path)
    assert code == 0, summary
    downloaded = [e for e in summary["episodes"] if e["status"] == "downloaded"]
    assert len(downloaded) == len(served.audio_routes) - 1  # the video item is skipped
    assert summary["sources"] == [{"source": served.url, "kind": "feed", "status": "ok",
                                   "final_url": None, "episodes": len(downloaded),
                                   "error": None}]
    with_chapters = next(e for e in downloaded if e["transcripts"])
    audio = tmp_path / "archive" / with_chapters["path"]
    expected = json.loads((FEEDS / "chapters" / "pi-spec-example.json").read_text())
    starts = [round(c["startTime"] * 1000) for c in expected["chapters"]]
    probed = ffprobe_chapters(audio)
    assert [start for start, _, _ in probed] == starts
    assert [title for _, _, title in probed] == [c["title"] for c in expected["chapters"]]
    tags = ID3(audio)
    assert len(tags.getall("CHAP")) == len(starts) and tags.getall("CTOC")
    assert str(tags["TPOS"]) == "1" and str(tags["TRCK"]) == "3"
    assert tags["WFED"].url == served.url
    assert tags.getall("TIPL")[0].people[0] == ["host", "Adam Curry"]  # IPLS, read as v2.4
    # Transcripts beside the audio: <stem>.<language>.<ext>, verified and recorded.
    names = sorted(Path(t).name for t in with_chapters["transcripts"])
    assert names == sorted([f"{audio.stem}.es.vtt", f"{audio.stem}.txt"])
    for relative in with_chapters["transcripts"]:
        assert (tmp_path / "archive" / relative).stat().st_size > 0
    assert cli("verify", "-c", str(path)).returncode == 0
    (audio.parent / f"{audio.stem}.es.vtt").write_text("WEBVTT\n\nchanged\n")
    assert cli("verify", "-c", str(path)).returncode == 1

    # Unchanged: one conditional request, no parse, no audio.
    (audio.parent / f"{audio.stem}.es.vtt").unlink()
    server.reset_stats()
    code, again = sync_json(path)
    assert again["sources"][0]["status"] == "not_modified"
    assert [e.path for e in server.log] == [served.route]
    assert server.log[0].status == 304


def test_psc_chapters_keep_their_milliseconds(server: TestServer, tmp_path: Path) -> None:
    served = serve_feed(server, "podlovers-podlove4.xml", declared_ms=3_000_000)
    code, summary = sync_json(config(tmp_path, served.url))
    assert code == 0, summary
    first = tmp_path / "archive" / summary["episodes"][0]["path"]
    starts = [frame.start_time for frame in ID3(first).getall("CHAP")]
    assert sorted(starts)[:3] == [0, 60_591, 209_843]
    assert ffprobe_chapters(first)[1][2] == "Metadaten-Import aus dem RSS-Feed"


def test_permanent_redirects_update_the_feed_url_and_temporary_ones_do_not(
    server: TestServer, tmp_path: Path
) -> None:
    served = serve_feed(server, "podlovers-podlove4.xml", route="/new/feed.xml")
    server.add("/old.xml", redirect_to=server.url("/new/feed.xml"), redirect_status=301)
    server.add("/temp.xml", redirect_to=server.url("/old.xml"), redirect_status=302)
    path = config(tmp_path, server.url("/old.xml"))
    code, summary = sync_json(path)
    assert code == 0 and summary["sources"][0]["status"] == "moved"
    assert summary["sources"][0]["final_url"] == served.url
    server.reset_stats()
    sync_json(path)
    assert [e.path for e in server.log] == ["/new/feed.xml"]  # asked where it moved

    other = tmp_path / "other"
    other.mkdir()
    path = config(other, server.url("/temp.xml"))
    code, summary = sync_json(path)
    assert summary["sources"][0]["status"] == "ok"  # 302 first: nothing is stored
    server.reset_stats()
    sync_json(path)
    assert server.log[0].path == "/temp.xml"


def test_a_gone_feed_is_reported_and_not_asked_every_run(
    server: TestServer, tmp_path: Path
) -> None:
    server.add("/gone.xml", body=b"gone", statuses=[410] * 5)
    path = config(tmp_path, server.url("/gone.xml"))
    code, summary = sync_json(path)
    assert summary["sources"][0]["status"] == "gone"
    server.reset_stats()
    code, summary = sync_json(path)
    assert summary["sources"][0]["status"] == "gone" and server.log == []
    assert code == 0  # reported, not a failure of every hourly run


def test_a_paged_feed_is_followed_to_the_end_once_per_page(
    server: TestServer, tmp_path: Path
) -> None:
    def link(rel: str, route: str, host: str = "127.0.0.1") -> str:
        return f'<atom:link rel="{rel}" href="{server.url(route, host)}"/>'

    pages = {
        "/p1.xml": ([1, 2], link("next", "/p2.xml")),
        "/p2.xml": ([3, 4], link("next", "/p3.xml", "localhost") + link("prev-archive",
                                                                          "/p1.xml")),
        "/p3.xml": ([5], link("next", "/p1.xml")),  # back to the start: a cycle
    }
    for route, (numbers, links) in pages.items():
        items = "".join(item(f"ep-{n}", server.url(f"/audio/{n}.mp3"), title=f"Episode {n}",
                             date=f"Tue, 0{n} Oct 2024 10:00:00 +0000") for n in numbers)
        server.add(route, body=rss(items, channel=links), content_type="application/rss+xml")
    for n in range(1, 6):
        server.add(f"/audio/{n}.mp3", body=mp3_bytes(1_000, seed=n))
    code, summary = sync_json(config(tmp_path, server.url("/p1.xml")))
    assert code == 0, summary
    assert summary["counts"]["downloaded"] == 5
    for route in pages:
        assert len(server.requests_to(route)) == 1


def test_new_feed_url_switches_only_to_a_working_feed(
    server: TestServer, tmp_path: Path
) -> None:
    server.add("/audio/1.mp3", body=mp3_bytes(1_000, seed=1))
    server.add("/moved.xml", body=rss(item("new-1", server.url("/audio/1.mp3"))))
    pointer = f"<itunes:new-feed-url>{server.url('/moved.xml')}</itunes:new-feed-url>"
    server.add("/old.xml", body=rss(item("old-1", server.url("/audio/1.mp3")), channel=pointer))
    code, summary = sync_json(config(tmp_path, server.url("/old.xml")))
    assert summary["sources"][0]["status"] == "moved"
    assert [e["guid"] for e in summary["episodes"]] == ["new-1"]
    # The episodes stay the configured feed's (the manifest keeps the move).
    assert [e["source"] for e in summary["episodes"]] == [server.url("/old.xml")]

    itself = f"<itunes:new-feed-url>{server.url('/self.xml')}</itunes:new-feed-url>"
    server.add("/self.xml", body=rss(item("self-1", server.url("/audio/1.mp3")),
                                     channel=itself))
    broken = f"<itunes:new-feed-url>{server.url('/missing.xml')}</itunes:new-feed-url>"
    server.add("/broken.xml", body=rss(item("broken-1", server.url("/audio/1.mp3")),
                                       channel=broken))
    other = tmp_path / "other"
    other.mkdir()
    code, summary = sync_json(config(other, server.url("/self.xml"),
                                     server.url("/broken.xml")))
    assert code == 0 and [s["status"] for s in summary["sources"]] == ["ok", "ok"]
    assert len(server.requests_to("/self.xml")) == 1


def test_entity_bombs_and_external_entities_are_never_expanded(
    server: TestServer, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bomb = (f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY l0 "lol">{lol}'
            f'<!ENTITY xxe SYSTEM "file://{secret}">]>').encode()
    body = bomb + rss(item("b-1", server.url("/audio/1.mp3"), title="A &l9; B &xxe; C"))[
        len(b'<?xml version="1.0" encoding="UTF-8"?>'):]
    server.add("/bomb.xml", body=body)
    started = time.monotonic()
    result = cli("show", server.url("/bomb.xml"), "--json")
    assert time.monotonic() - started < 30
    assert "TOP-SECRET" not in result.stdout + result.stderr
    assert "lollol" not in result.stdout
    entries = json.loads(result.stdout)
    assert [e["guid"] for e in entries] == ["b-1"]


def test_urls_a_feed_supplies_never_reach_metadata_addresses(
    server: TestServer, tmp_path: Path
) -> None:
    server.add("/evil.xml", body=rss(item(
        "evil-1", "http://169.254.169.254/latest/meta-data/iam/credentials.mp3")))
    code, summary = sync_json(config(tmp_path, server.url("/evil.xml")))
    assert code == 1
    error = summary["episodes"][0]["error"]
    assert "link-local or cloud-metadata" in error


def test_guard_rules_for_private_addresses() -> None:
    import asyncio

    from fetcher.errors import DownloadError
    from fetcher.net.guard import check

    async def run(url: str, trust: str, allow: bool = False) -> None:
        await check(url, trust, allow_private=allow, key="t")

    asyncio.run(run("http://127.0.0.1/a.mp3", "own"))
    asyncio.run(run("http://127.0.0.1/a.mp3", "remote-private"))
    asyncio.run(run("http://10.1.2.3/a.mp3", "remote", allow=True))
    with pytest.raises(DownloadError, match="private or loopback"):
        asyncio.run(run("http://10.1.2.3/a.mp3", "remote"))
    with pytest.raises(DownloadError, match="metadata"):
        asyncio.run(run("http://[fe80::1]/a.mp3", "remote-private"))


def test_opml_lists_are_followed_and_exported(server: TestServer, tmp_path: Path) -> None:
    first = serve_feed(server, "podlovers-podlove4.xml", route="/one.xml")
    server.add("/a/1.mp3", body=mp3_bytes(1_000, seed=7))
    server.add("/two.xml", body=rss(item("two-1", server.url("/a/1.mp3")), title="Two"))
    opml = tmp_path / "subscriptions.opml"
    opml.write_text(f"""<?xml version="1.0"?><opml version="2.0"><head/><body>
      <outline text="Podcasts"><outline text="One" type="rss" xmlUrl="{first.url}"/>
        <outline text="Nested"><outline text="Two" type="rss"
          xmlUrl="{server.url('/two.xml')}"/></outline></outline></body></opml>""")
    path = config(tmp_path, str(opml))
    code, summary = sync_json(path)
    assert code == 0, summary
    assert summary["counts"]["downloaded"] == 3
    assert [s["kind"] for s in summary["sources"]] == ["opml", "feed", "feed"]
    exported = cli("export-opml", "-c", str(path))
    assert exported.returncode == 0
    assert first.url in exported.stdout and server.url("/two.xml") in exported.stdout
    assert etree.fromstring(exported.stdout.encode()).tag == "opml"


def test_audio_that_is_not_mp3_is_archived_tagged_and_chaptered(
    server: TestServer, tmp_path: Path
) -> None:
    import mutagen

    server.add("/a/1.m4a", body=encoded_audio("m4a"), content_type="audio/mp4")
    server.add("/a/2.opus", body=encoded_audio("opus"), content_type="audio/opus")
    chapters = ('<psc:chapters xmlns:psc="http://podlove.org/simple-chapters">'
                '<psc:chapter start="00:00:00.000" title="Start"/>'
                '<psc:chapter start="00:00:00.500" title="Half"/></psc:chapters>')
    items = (item("m4a-1", server.url("/a/1.m4a"), title="An AAC episode",
                  media_type="audio/mp4", extra=chapters)
             + item("opus-1", server.url("/a/2.opus"), title="An Opus episode",
                    media_type="audio/opus"))
    server.add("/f.xml", body=rss(items))
    path = config(tmp_path, server.url("/f.xml"))
    code, summary = sync_json(path)
    assert code == 0, summary
    paths = {e["guid"]: tmp_path / "archive" / e["path"] for e in summary["episodes"]}
    assert paths["m4a-1"].suffix == ".m4a" and paths["opus-1"].suffix == ".opus"
    assert mutagen.File(paths["m4a-1"]).tags["\xa9nam"] == ["An AAC episode"]
    assert mutagen.File(paths["opus-1"]).tags["title"] == ["An Opus episode"]
    assert ffprobe(paths["m4a-1"])["format"]["tags"]["title"] == "An AAC episode"
    sidecar = paths["m4a-1"].with_name(paths["m4a-1"].stem + ".chapters.json")
    document = json.loads(sidecar.read_text())
    assert [c["title"] for c in document["chapters"]] == ["Start", "Half"]
    assert cli("verify", "-c", str(path)).returncode == 0


def test_audio_that_is_not_mp3_is_retagged_whole_and_verified(
    server: TestServer, tmp_path: Path
) -> None:
    import mutagen

    server.add("/a/1.m4a", body=encoded_audio("m4a"), content_type="audio/mp4")

    def feed(title: str) -> bytes:
        return rss(item("m4a-1", server.url("/a/1.m4a"), title=title, media_type="audio/mp4"))

    server.add("/f.xml", body=feed("First title"))
    path = config(tmp_path, server.url("/f.xml"))
    assert sync_json(path)[0] == 0
    server.add("/f.xml", body=feed("Second title"))
    server.reset_stats()
    code, summary = sync_json(path)
    assert code == 0 and summary["counts"]["retagged"] == 1, summary
    assert server.requests_to("/a/1.m4a") == []
    archived = tmp_path / "archive" / summary["episodes"][0]["path"]
    assert mutagen.File(archived).tags["\xa9nam"] == ["Second title"]
    assert ffprobe(archived)["format"]["tags"]["title"] == "Second title"
    assert cli("verify", "-c", str(path)).returncode == 0
    assert not list((tmp_path / "archive" / ".fetcher" / "journal").iterdir())


def test_duplicate_guids_and_wrong_lengths(server: TestServer, tmp_path: Path) -> None:
    audio = mp3_bytes(1_000, seed=3)
    server.add("/a/1.mp3", body=audio)
    server.add("/a/2.mp3", body=mp3_bytes(1_000, seed=4))
    items = (item("same", server.url("/a/1.mp3"), length=0)
             + item("same", server.url("/a/1.mp3"), length=0)
             + item("same", server.url("/a/2.mp3"), length=len(audio) + 999))
    server.add("/d.xml", body=rss(items))
    result = cli("sync", "-c", str(config(tmp_path, server.url("/d.xml"))), "--json")
    summary = json.loads(result.stdout)
    assert result.returncode == 0, summary
    assert summary["counts"]["downloaded"] == 2 and summary["counts"]["skipped"] == 1
    assert "used again for other audio" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_FEEDS)
def test_every_audio_item_of_every_shared_feed_is_archived_with_its_chapters(
    server: TestServer, tmp_path: Path, name: str
) -> None:
    served = serve_feed(server, name, declared_ms=4 * 3600 * 1000)
    shown = json.loads(cli("show", served.url, "--json").stdout)
    expected = {e["guid"]: e for e in shown if e["status"] == "episode"}
    path = config(tmp_path, served.url, download={"jobs": 4, "per_host": 4, "retries": 0})
    code, summary = sync_json(path)
    assert code == 0, [e["error"] for e in summary["episodes"] if e["error"]][:3]
    archived = {e["guid"]: e for e in summary["episodes"] if e["status"] == "downloaded"}
    assert set(archived) == set(expected)
    probed = False
    for guid, episode in archived.items():
        audio = tmp_path / "archive" / episode["path"]
        if not expected[guid]["chapters_source"]:
            continue
        if audio.suffix == ".mp3":
            assert ID3(audio).getall("CHAP"), audio.name
            if not probed:
                assert ffprobe_chapters(audio)
                probed = True
        else:
            assert audio.with_name(audio.stem + ".chapters.json").is_file()
