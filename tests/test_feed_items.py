"""Settled feed items: a feed that changed is read again without the items already
archived, and what a run decides is the same as when every item is read."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support.feeds import FEEDS, item, rss
from support.httpserver import TestServer
from support.mp3factory import mp3_bytes

import fetcher
from fetcher.sources import feeditems
from fetcher.sources import rss as rss_module
from fetcher.sources.feeds import read_body
from fetcher.sources.formats import xml_kind
from fetcher.sources.xmlsafe import NotXML, parse_xml

UP_TO_DATE = fetcher.Status.UP_TO_DATE
DOWNLOADED = fetcher.Status.DOWNLOADED
RETAGGED = fetcher.Status.RETAGGED


class Show:
    """A feed served on the loopback server by a host that ignores conditional
    requests (every run gets the whole feed), its items editable between runs."""

    def __init__(self, server: TestServer, tmp_path: Path, items: int = 5,
                 conditional: bool = False):
        self.server = server
        self.conditional = conditional
        self.tmp_path = tmp_path
        self.items: dict[str, str] = {}
        #: Items of a second page (RFC 5005 ``next``), when there are any.
        self.second: dict[str, str] = {}
        self.channel = ""
        self.title = "Test Show"
        for n in range(items):
            self.add(f"ep-{n}")

    def add(self, guid: str, *, audio: str | None = None, title: str = "",
            page: int = 1) -> None:
        route = f"/audio/{audio or guid}.mp3"
        self.server.add(route, body=mp3_bytes(800, seed=len(self.items) + len(self.second)),
                        content_type="audio/mpeg")
        items = self.items if page == 1 else self.second
        items[guid + ("" if audio is None else "~" + audio)] = item(
            guid, self.server.url(route), title=title or f"Episode {guid}")

    def publish(self) -> None:
        channel = self.channel
        if self.second:
            self.server.add("/page2.xml", body=rss("\n".join(self.second.values()),
                                                   title=self.title),
                            content_type="application/rss+xml")
            channel += f'<atom:link rel="next" href="{self.server.url("/page2.xml")}"/>'
        body = rss("\n".join(self.items.values()), title=self.title, channel=channel)
        self.server.add("/feed.xml", body=body, content_type="application/rss+xml",
                        conditional=self.conditional)

    @property
    def url(self) -> str:
        return self.server.url("/feed.xml")

    def config(self, archive: str = "archive", **tags: Any) -> fetcher.Config:
        path = self.tmp_path / f"{archive}.toml"
        lines = [f'[archive]\ndir = "{self.tmp_path / archive}"',
                 f"[sources]\npaths = {json.dumps([self.url])}",
                 "[download]\nretries = 1\nbackoff = 0.01\ntimeout = 5.0",
                 "[tags]\ncover = false",
                 *(f"{key} = {json.dumps(value)}" for key, value in tags.items())]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return fetcher.load_config(path)

    def settled_rows(self) -> list[tuple[str, str]]:
        with sqlite3.connect(self.tmp_path / "archive" / ".fetcher" / "manifest.sqlite3") as db:
            return sorted(db.execute("SELECT guid, path FROM feed_items").fetchall())


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The items turned into episodes, by title."""
    titles: list[str] = []
    original = rss_module._read_item

    def counting(item: Any, *args: Any, **kwargs: Any) -> Any:
        entry = original(item, *args, **kwargs)
        titles.append(getattr(entry, "title", "skip"))
        return entry

    monkeypatch.setattr(rss_module, "_read_item", counting)
    return titles


def counts(report: fetcher.SyncReport) -> dict[str, int]:
    return {s.value: n for s in fetcher.Status if (n := report.count(s))}


def archived(show: Show) -> fetcher.Config:
    """Archive the show, then count it once so that its items settle."""
    show.publish()
    config = show.config()
    total = len(show.items) + len(show.second)
    assert counts(fetcher.sync(config)) == {"downloaded": total}
    assert counts(fetcher.sync(config, keep_up_to_date=False)) == {"up_to_date": total}
    assert [guid for guid, _ in show.settled_rows()] == sorted([*show.items, *show.second])
    return config


def test_a_changed_feed_is_read_without_its_settled_items(
        server: TestServer, tmp_path: Path, reads: list[str]) -> None:
    show = Show(server, tmp_path)
    config = archived(show)
    show.add("ep-new")
    show.publish()
    reads.clear()
    server.reset_stats()
    report = fetcher.sync(config, keep_up_to_date=False)
    assert counts(report) == {"downloaded": 1, "up_to_date": 5}
    assert reads == ["Episode ep-new"]  # the five settled items were never built
    assert [e.path for e in server.log] == ["/feed.xml", "/audio/ep-new.mp3"]
    assert report.sources[0].episodes == 6
    reads.clear()
    # Archived as the feed says, the new item settled with its manifest row.
    assert counts(fetcher.sync(config, keep_up_to_date=False)) == {"up_to_date": 6}
    assert reads == []


def test_an_edited_item_a_lost_file_and_a_dropped_item_are_noticed(
        server: TestServer, tmp_path: Path, reads: list[str]) -> None:
    show = Show(server, tmp_path)
    config = archived(show)
    show.items["ep-1"] = show.items["ep-1"].replace("Episode ep-1", "Episode one, renamed")
    del show.items["ep-4"]
    show.publish()
    lost = next((tmp_path / "archive").rglob("*ep-2*.mp3"))
    lost.unlink()
    reads.clear()
    report = fetcher.sync(config, keep_up_to_date=False)
    assert counts(report) == {"retagged": 1, "downloaded": 1, "up_to_date": 2}
    assert sorted(reads) == ["Episode ep-2", "Episode one, renamed"]
    assert lost.exists()
    # ep-4 left the feed: its item is forgotten; ep-1 (re-tagged) and ep-2 (fetched
    # again) settled as they were archived.
    assert [guid for guid, _ in show.settled_rows()] == ["ep-0", "ep-1", "ep-2", "ep-3"]
    reads.clear()
    assert counts(fetcher.sync(config, keep_up_to_date=False)) == {"up_to_date": 4}
    assert reads == []


def test_a_changed_channel_or_changed_settings_read_every_item_again(
        server: TestServer, tmp_path: Path, reads: list[str]) -> None:
    show = Show(server, tmp_path)
    config = archived(show)
    show.title = "Test Show, renamed"
    show.publish()
    reads.clear()
    assert counts(fetcher.sync(config, keep_up_to_date=False)) == {"retagged": 5}
    assert len(reads) == 5
    assert counts(fetcher.sync(config, keep_up_to_date=False)) == {"up_to_date": 5}
    reads.clear()
    changed = show.config(id3_version=4)
    assert counts(fetcher.sync(changed, keep_up_to_date=False)) == {"retagged": 5}
    assert len(reads) == 5


def test_a_new_item_reusing_a_settled_guid_is_read_as_if_nothing_were_settled(
        server: TestServer, tmp_path: Path) -> None:
    show = Show(server, tmp_path)
    config = archived(show)
    show.add("ep-2", audio="ep-2-other")  # the same guid, other audio: another episode
    show.publish()
    report = fetcher.sync(config, keep_up_to_date=False)
    assert counts(report) == {"downloaded": 1, "up_to_date": 5}
    assert [o.episode.guid for o in report.outcomes if o.status is DOWNLOADED
            and o.episode] == [f"ep-2#{server.url('/audio/ep-2-other.mp3')}"]
    # Neither twin is settled (their identity depends on their order).
    for _ in range(2):
        assert counts(fetcher.sync(config, keep_up_to_date=False)) == {"up_to_date": 6}
        assert "ep-2" not in {guid.split("#")[0] for guid, _ in show.settled_rows()}


def test_a_paged_feed_settles_page_by_page_and_a_guid_repeated_across_pages_is_read_whole(
        server: TestServer, tmp_path: Path, reads: list[str]) -> None:
    show = Show(server, tmp_path, items=3)
    for n in range(3):
        show.add(f"old-{n}", page=2)
    config = archived(show)
    reads.clear()
    assert counts(fetcher.sync(config, keep_up_to_date=False)) == {"up_to_date": 6}
    assert reads == []
    # A new first-page item with the guid of a settled item of the second page: what
    # the run decides is what a run with nothing settled decides (in a copy).
    show.add("old-1", audio="old-1-again")
    show.publish()
    shutil.copytree(tmp_path / "archive", tmp_path / "copy")
    server.reset_stats()
    report = fetcher.sync(config, keep_up_to_date=False)
    assert [e.path for e in server.log].count("/feed.xml") == 2  # asked again, whole
    expected = fetcher.sync(show.config("copy"))
    assert counts(report) == counts(expected)
    assert decided(report) == decided(expected)
    assert "old-1#" in " ".join(g for g, _ in decided(report))


def decided(report: fetcher.SyncReport) -> list[tuple[str, str]]:
    return sorted((o.episode.guid, o.status.value) for o in report.outcomes
                  if o.episode and o.status is not UP_TO_DATE)


def test_an_unchanged_feed_counts_its_settled_items_and_notices_a_lost_file(
        server: TestServer, tmp_path: Path, reads: list[str]) -> None:
    show = Show(server, tmp_path, items=3, conditional=True)
    show.publish()
    config = show.config()
    # A cron run (counting, as the CLI's) settles each item as it archives it.
    assert counts(fetcher.sync(config, keep_up_to_date=False)) == {"downloaded": 3}
    server.reset_stats()
    reads.clear()
    report = fetcher.sync(config, keep_up_to_date=False)  # 304: one small request
    assert [(e.path, e.status) for e in server.log] == [("/feed.xml", 304)]
    assert counts(report) == {"up_to_date": 3} and reads == []
    assert report.sources[0].status == "not_modified" and report.sources[0].episodes == 3
    lost = next((tmp_path / "archive").rglob("*ep-1*.mp3"))
    lost.unlink()
    server.reset_stats()
    report = fetcher.sync(config, keep_up_to_date=False)
    assert counts(report) == {"downloaded": 1, "up_to_date": 2}
    assert [(e.path, e.status) for e in server.log] == [
        ("/feed.xml", 304), ("/feed.xml", 200), ("/audio/ep-1.mp3", 200)]
    assert lost.exists()
    # A listing run (sync --json) checks the settled items' files behind a 304 too.
    lost.unlink()
    server.reset_stats()
    report = fetcher.sync(config)
    assert counts(report) == {"downloaded": 1, "up_to_date": 2}
    assert lost.exists()


def test_a_listing_run_settles_what_it_archives(server: TestServer, tmp_path: Path) -> None:
    show = Show(server, tmp_path, items=3, conditional=True)
    show.publish()
    config = show.config()
    assert counts(fetcher.sync(config)) == {"downloaded": 3}  # lists every episode
    assert [guid for guid, _ in show.settled_rows()] == ["ep-0", "ep-1", "ep-2"]
    server.reset_stats()
    assert counts(fetcher.sync(config, keep_up_to_date=False)) == {"up_to_date": 3}
    assert [(e.path, e.status) for e in server.log] == [("/feed.xml", 304)]


def test_a_listing_run_reads_every_item_and_a_manifest_change_unsettles(
        server: TestServer, tmp_path: Path, reads: list[str]) -> None:
    show = Show(server, tmp_path)
    config = archived(show)
    reads.clear()
    report = fetcher.sync(config)  # the library's default lists every episode
    assert len(reads) == 5 and len(report.outcomes) == 5
    manifest = tmp_path / "archive" / ".fetcher" / "manifest.sqlite3"
    with sqlite3.connect(manifest) as db:
        db.execute("UPDATE episodes SET last_error = 'x' WHERE guid = 'ep-3'")
    assert "ep-3" not in {guid for guid, _ in show.settled_rows()}
    reads.clear()
    assert counts(fetcher.sync(config, keep_up_to_date=False)) == {"up_to_date": 5}
    assert reads == ["Episode ep-3"]


# --- the bytes of items ---------------------------------------------------------


def test_items_are_found_in_the_bytes_only_when_they_show_plainly() -> None:
    feed = rss(item("a", "https://e.com/a.mp3") + "\n" + item("b", "https://e.com/b.mp3"))
    spans = feeditems.item_spans(feed)
    assert spans is not None and [feed[s:e][:6] for s, e in spans] == [b"<item>"] * 2
    assert all(feed[s:e].endswith(b"</item>") for s, e in spans)
    in_cdata = rss(item("a", "https://e.com/a.mp3",
                        extra="<description><![CDATA[ <item> ]]></description>"))
    assert feeditems.item_spans(in_cdata) is None
    closing = rss(item("a", "https://e.com/a.mp3", extra="<!-- </item> -->"))
    assert feeditems.item_spans(closing) is None
    assert feeditems.item_spans(rss("<item/>")) is None
    assert feeditems.item_spans(feed + b"</item>") is None
    other = rss(item("a", "https://e.com/a.mp3", extra="<itemized>x</itemized>"))
    assert len(feeditems.item_spans(other) or []) == 1
    assert feeditems.item_spans(feed.decode().encode("utf-16")) == []


def test_a_page_read_without_its_settled_items_gives_the_rest_unchanged(
        tmp_path: Path) -> None:
    body = rss("\n".join(item(f"g{n}", f"https://e.com/{n}.mp3", title=f"T{n}")
                         for n in range(6)))
    key = feeditems.salt("feed")

    def read(root: Any, keys: Any) -> rss_module.FeedPage:
        return rss_module.read_feed_page(root, source="feed", base_url="https://e.com/",
                                         item_keys=keys)

    whole = read(parse_xml(body).root, None)
    ledger = feeditems.FeedLedger({}, str(tmp_path))
    prepared = ledger.prepare(body, key)
    assert prepared is not None and len(prepared.keys) == 6
    keyed = read(parse_xml(body).root, prepared.keys)
    assert keyed.keyed and [e.item.item for e in keyed.entries
                            if isinstance(e, fetcher.Episode) and e.item] == prepared.keys
    (tmp_path / "g1.mp3").write_bytes(b"x" * 10)
    (tmp_path / "g4.mp3").write_bytes(b"x" * 10)
    ledger.known = {prepared.keys[1]: (keyed.context, "g1", "g1.mp3", 10),
                    prepared.keys[4]: (keyed.context, "g4", "g4.mp3", 10),
                    prepared.keys[5]: (keyed.context, "g5", "g5.mp3", 10)}  # no file
    prepared = ledger.prepare(body, key)
    assert prepared is not None and prepared.settled == [1, 4]
    page = ledger.read_without_settled(body, prepared, read)
    assert page is not None and page.settled == ["g1", "g4"]
    rest = [e for n, e in enumerate(whole.entries) if n not in (1, 4)]
    assert [(e.guid, e.title) for e in page.entries if isinstance(e, fetcher.Episode)] == [
        (e.guid, e.title) for e in rest if isinstance(e, fetcher.Episode)]
    ledger.known[prepared.keys[1]] = ("another channel", "g1", "g1.mp3", 10)
    assert ledger.read_without_settled(body, prepared, read) is None


def read_without_half(name: str, body: bytes, tmp_path: Path) -> str:
    """Settle every other episode of the feed *body*, read it again without them, and
    check that the rest read exactly as in a whole read. What happened: ``cut`` (and
    checked), ``whole`` (the bytes cannot be trusted: read whole) or ``not a feed``."""
    key = feeditems.salt(name)

    def read(root: Any, keys: Any) -> rss_module.FeedPage:
        return rss_module.read_feed_page(root, source=name, base_url="https://e.com/f.xml",
                                         item_keys=keys)

    try:
        parsed = parse_xml(body)
    except NotXML:
        return "not a feed"
    if parsed.recovered or xml_kind(parsed.root) != "rss":
        return "not a feed"
    _, keys = feeditems.FeedLedger({}, str(tmp_path)).read_page(body, key, read)
    whole = read(parsed.root, keys)
    episodes = [e for e in whole.entries if isinstance(e, fetcher.Episode)]
    if not whole.keyed or not episodes:
        return "whole"
    settled = {e.item.item: e for e in episodes[::2] if e.item}
    known = {}
    for n, (item_key, episode) in enumerate(settled.items()):
        (tmp_path / f"{n}.mp3").write_bytes(b"x")
        known[item_key] = (episode.item.context if episode.item else "", episode.guid,
                           f"{n}.mp3", 1)
    page, _ = feeditems.FeedLedger(known, str(tmp_path)).read_page(body, key, read)
    assert page is not None, name
    assert sorted(page.settled) == sorted(e.guid for e in settled.values())
    rest = [e for e in whole.entries
            if not (isinstance(e, fetcher.Episode) and e.item and e.item.item in settled)]
    assert [dataclasses.replace(e, item=None) if isinstance(e, fetcher.Episode) else e
            for e in page.entries] == [
        dataclasses.replace(e, item=None) if isinstance(e, fetcher.Episode) else e
        for e in rest]
    return "cut"


@pytest.mark.parametrize("name", sorted(p.name for p in FEEDS.glob("*.xml")))
def test_every_shared_feed_read_without_half_its_items_gives_the_other_half_unchanged(
        name: str, tmp_path: Path) -> None:
    expected = "not a feed" if "MALFORMED" in name or "NOT-A-FEED" in name else "cut"
    assert read_without_half(name, (FEEDS / name).read_bytes(), tmp_path) == expected


#: Spellings real feeds use, and traps for a byte scanner: what each must come to.
VARIANTS = {
    "attributes": ((b"<item>", b'<item xml:lang="en">'), "cut"),
    "a newline in the tag": ((b"<item>", b"<item\n>"), "cut"),
    "space before the end": ((b"</item>", b"</item >"), "cut"),
    "CRLF": ((b"\n", b"\r\n"), "cut"),
    "an item in a comment": ((b"<channel>", b"<channel><!-- <item>x</item> -->"), "whole"),
    "an end tag in a comment": ((b"<channel>", b"<channel><!-- </item> -->"), "whole"),
    "an item in CDATA": ((b"<title>", b"<title><![CDATA[<item>]]>"), "whole"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_items_that_do_not_show_plainly_are_read_whole_never_misread(
        variant: str, tmp_path: Path) -> None:
    (old, new), expected = VARIANTS[variant]
    body = (FEEDS / "pc20-podcasting20-2021.xml").read_bytes()
    assert old in body
    assert read_without_half(variant, body.replace(old, new), tmp_path) == expected


def test_a_feed_read_in_recovery_mode_is_never_settled(tmp_path: Path) -> None:
    body = (FEEDS / "wgbh-nova-MALFORMED-bare-ampersand.xml").read_bytes()
    ledger = feeditems.FeedLedger({}, str(tmp_path))
    kind, _, page = read_body("https://e.com/f.xml", body, base_url="https://e.com/f.xml",
                              trust="remote", media="any",  # its items are video
                              show_slug=None, fingerprint="", ledger=ledger)
    assert kind == "rss" and page is not None
    episodes = [e for e in page.entries if isinstance(e, fetcher.Episode)]
    assert episodes and not page.keyed and all(e.item is None for e in episodes)


def test_a_feed_file_is_read_without_its_settled_items_too(
        server: TestServer, tmp_path: Path, reads: list[str]) -> None:
    show = Show(server, tmp_path, items=3)
    feed = tmp_path / "show.rss"
    feed.write_bytes(rss("\n".join(show.items.values())))
    config = show.config()
    config = dataclasses.replace(config, sources=dataclasses.replace(
        config.sources, paths=(str(feed),)))
    assert counts(fetcher.sync(config)) == {"downloaded": 3}
    assert counts(fetcher.sync(config, keep_up_to_date=False)) == {"up_to_date": 3}
    show.add("ep-new")
    feed.write_bytes(rss("\n".join(show.items.values())))
    reads.clear()
    report = fetcher.sync(config, keep_up_to_date=False)
    assert counts(report) == {"downloaded": 1, "up_to_date": 3}
    assert reads == ["Episode ep-new"]
    assert report.sources[0].episodes == 4
