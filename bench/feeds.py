"""Feed benchmarks: parsing big feeds, and a no-op run over unchanged feeds (304).

    python bench/run.py feeds [--runs 5] [--feeds 100]
"""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "tests" / "fixtures" / "feeds"


def synthetic_feed(items: int) -> bytes:
    """A feed shaped like a long-running show's: iTunes and Podcasting 2.0 elements,
    show notes of a few hundred bytes per item (3,857 items make about 3.2 MB)."""
    head = ('<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
            'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd" '
            'xmlns:podcast="https://podcastindex.org/namespace/1.0" '
            'xmlns:content="http://purl.org/rss/1.0/modules/content/">\n<channel>\n'
            '<title>A Long Running Show</title><link>https://example.com/</link>\n'
            '<itunes:image href="https://example.com/cover.jpg"/>\n')
    parts = [head]
    for n in range(items, 0, -1):
        day = 1 + n % 28
        parts.append(
            f"<item><title>Episode {n}: A title of ordinary length</title>"
            f'<guid isPermaLink="false">show-episode-{n:05d}-guid</guid>'
            f"<pubDate>Mon, {day:02d} Jan 2024 10:00:00 +0000</pubDate>"
            f"<description>Short summary of episode {n}.</description>"
            f"<content:encoded><![CDATA[<p>Show notes for episode {n}, with "
            f"<a href=\"https://example.com/{n}\">links</a> and a few sentences of text "
            f"about what was discussed, who came on, and where to find more.</p>"
            f"<ul><li>First topic</li><li>Second topic</li><li>Third topic</li></ul>]]>"
            f"</content:encoded>"
            f'<enclosure url="https://cdn.example.com/show/episode-{n:05d}.mp3" '
            f'length="{40_000_000 + n}" type="audio/mpeg"/>'
            f"<itunes:duration>{3600 + n % 900}</itunes:duration>"
            f"<itunes:episode>{n}</itunes:episode><itunes:explicit>no</itunes:explicit>"
            f'<podcast:chapters url="https://example.com/{n}/chapters.json" '
            f'type="application/json+chapters"/>'
            f"</item>\n")
    parts.append("</channel>\n</rss>\n")
    return "".join(parts).encode()


#: Peak RSS of a child process, in KiB (the benchmark scripts below start with it).
_PEAK_RSS = """
def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1])
    return 0
"""

_PARSE = _PEAK_RSS + """
import sys, time, json, statistics
from pathlib import Path
from fetcher.sources.xmlsafe import parse_xml
from fetcher.sources.rss import read_feed_page
data = Path(sys.argv[1]).read_bytes()
runs = int(sys.argv[2])
before = rss_kb()
times = []
for _ in range(runs):
    start = time.perf_counter()
    page = read_feed_page(parse_xml(data).root, source="bench", base_url="https://e.com/")
    times.append(time.perf_counter() - start)
print(json.dumps({"ms": statistics.median(times) * 1000, "best": min(times) * 1000,
                  "entries": len(page.entries), "peak_mb": (rss_kb() - before) / 1024}))
"""


_SETTLE = """
import sys, json
from pathlib import Path
from fetcher.sources.feeditems import FeedLedger, salt
from fetcher.sources.rss import read_feed_page
from fetcher.sources.xmlsafe import parse_xml
from fetcher.model import Episode
old, root = Path(sys.argv[1]).read_bytes(), sys.argv[2]
def read(parsed, keys):
    return read_feed_page(parsed, source="bench", base_url="https://e.com/", item_keys=keys)
# The run before: every item of the old feed read, archived and found up to date.
_, keys = FeedLedger({}, root).read_page(old, salt("bench"), read)
known = {}
for entry in read(parse_xml(old).root, keys).entries:
    if isinstance(entry, Episode) and entry.item:
        name = f"{len(known)}.mp3"
        Path(root, name).write_bytes(b"x" * 100)
        known[entry.item.item] = (entry.item.context, entry.guid, name, 100)
print(json.dumps(known))
"""

_REREAD = _PEAK_RSS + """
import sys, time, json, statistics
from pathlib import Path
from fetcher.sources.feeditems import FeedLedger, salt
from fetcher.sources.rss import read_feed_page
new, root = Path(sys.argv[1]).read_bytes(), sys.argv[2]
known = {k: tuple(v) for k, v in json.loads(Path(sys.argv[3]).read_text()).items()}
runs = int(sys.argv[4])
def read(parsed, keys):
    return read_feed_page(parsed, source="bench", base_url="https://e.com/", item_keys=keys)
before = rss_kb()
times = []
for _ in range(runs):
    start = time.perf_counter()
    found, _ = FeedLedger(known, root).read_page(new, salt("bench"), read)
    times.append(time.perf_counter() - start)
assert found is not None
print(json.dumps({"ms": statistics.median(times) * 1000, "best": min(times) * 1000,
                  "settled": len(found.settled), "read": len(found.entries),
                  "peak_mb": (rss_kb() - before) / 1024}))
"""


def bench_reread(runs: int) -> None:
    """The feed read again after it changed (one new item), its other items settled:
    what a cron run pays for a changed feed, or every run for a server that ignores
    conditional requests. The settled items are made by a process of their own, so
    that the figure is the re-read's (a fresh process, as a cron run is)."""
    with tempfile.TemporaryDirectory() as tmp:
        old, new = Path(tmp) / "old.xml", Path(tmp) / "new.xml"
        old.write_bytes(synthetic_feed(3856))
        new.write_bytes(synthetic_feed(3857))
        files = Path(tmp) / "archive"
        files.mkdir()
        known = Path(tmp) / "known.json"
        known.write_text(subprocess.run(
            [sys.executable, "-c", _SETTLE, str(old), str(files)],
            capture_output=True, text=True, check=True).stdout)
        out = subprocess.run([sys.executable, "-c", _REREAD, str(new), str(files), str(known),
                              str(runs)], capture_output=True, text=True, check=True).stdout
        figures = json.loads(out)
        print(f"re-read synthetic-3857.xml, one new item, {figures['settled']} settled "
              f"({figures['read']} read): {figures['ms']:6.1f} ms median "
              f"(best {figures['best']:.1f}), memory +{figures['peak_mb']:.1f} MB")


def bench_settled_feed(items: int, runs: int) -> None:
    """A cron run over one big feed whose server ignores conditional requests (so
    every run gets the whole feed) and whose items are all archived: ``sync --quiet``
    (settled items are cut out unread) against ``sync --json`` (every item read)."""
    from run import measured  # the bench driver's process measurement
    from support.httpserver import TestServer

    from fetcher.settings import TagSettings
    from fetcher.sources import load_episodes
    from fetcher.store.local import Archive
    from fetcher.store.manifest import Manifest, Record
    from fetcher.tagging.spec import tag_fingerprint

    with TestServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.add("/feed.xml", body=synthetic_feed(items),
                   content_type="application/rss+xml", conditional=False)
        url = server.url("/feed.xml")
        archive = Archive(Path(tmp) / "archive")
        archive.prepare()
        settings = TagSettings(cover=False)
        with Manifest.open(archive.manifest_path) as manifest:
            records = []
            for n, episode in enumerate(load_episodes([url]).episodes):
                relative = f"show/{n:05d}.mp3"
                (archive.root / "show").mkdir(exist_ok=True)
                (archive.root / relative).write_bytes(b"\0" * 1000)
                records.append(Record(
                    episode.guid, episode.show_slug, str(episode.source), episode.audio_url,
                    path=relative, expected_bytes=episode.expected_bytes, file_bytes=1000,
                    tag_hash=tag_fingerprint(episode, settings)))
            manifest.save_many(records)
        config = Path(tmp) / "feed.toml"
        config.write_text(f'[archive]\ndir = "{archive.root}"\n[sources]\npaths = ["{url}"]\n'
                          "[tags]\ncover = false\n", encoding="utf-8")
        sync = [sys.executable, "-m", "fetcher", "sync", "-c", str(config)]
        first, _ = measured([*sync, "--quiet"])  # finds every item up to date: settles them
        for flag in ("--quiet", "--json"):
            measures = [measured([*sync, flag])[0] for _ in range(runs)]
            wall = statistics.median(m.wall for m in measures)
            rss = statistics.median(m.rss_mb for m in measures)
            print(f"sync {flag:<8} of a {items}-item feed sent whole every run, all archived: "
                  f"{wall:.3f} s wall (median of {runs}), peak RSS {rss:.1f} MB")
        if any(e.status != 200 for e in server.log) or len(server.log) != 2 + 2 * runs:
            raise SystemExit("the feed runs asked for more than the feed")
        print(f"  (the first --quiet run, which settles the items: {first.wall:.3f} s)")


def bench_parse(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = Path(tmp) / "synthetic-3857.xml"
        synthetic.write_bytes(synthetic_feed(3857))
        cases = [FIXTURES / "giantbomb-730.xml", FIXTURES / "archiveorg-1449-items-no-guid.xml",
                 synthetic]
        for path in cases:
            out = subprocess.run([sys.executable, "-c", _PARSE, str(path), str(runs)],
                                 capture_output=True, text=True, check=True).stdout
            figures = json.loads(out)
            print(f"parse {path.name:<36} {path.stat().st_size / 1e6:5.2f} MB "
                  f"{figures['entries']:>5} items: {figures['ms']:6.1f} ms median "
                  f"(best {figures['best']:.1f}), memory +{figures['peak_mb']:.1f} MB")


def bench_unchanged_feeds(count: int, runs: int) -> None:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from support.feeds import item, rss
    from support.httpserver import TestServer
    from support.mp3factory import mp3_bytes

    with TestServer() as server, tempfile.TemporaryDirectory() as tmp:
        urls = []
        for n in range(count):
            server.add(f"/a/{n}.mp3", body=mp3_bytes(200, seed=n))
            server.add(f"/f/{n}.xml", body=rss(item(f"g{n}", server.url(f"/a/{n}.mp3")),
                                              title=f"Show {n}"), conditional=True)
            urls.append(server.url(f"/f/{n}.xml"))
        config = Path(tmp) / "feeds.toml"
        config.write_text(f'[archive]\ndir = "{tmp}/archive"\n[sources]\npaths = '
                          f"{json.dumps(urls)}\n[tags]\ncover = false\n", encoding="utf-8")
        # The first run as cron makes it (counting, so each item settles as it is
        # archived); the no-op runs then count each feed's items from their files.
        subprocess.run([sys.executable, "-m", "fetcher", "sync", "-c", str(config), "-q"],
                       check=True, timeout=600)
        with sqlite3.connect(Path(tmp) / "archive" / ".fetcher" / "manifest.sqlite3") as db:
            archived = db.execute("SELECT count(*) FROM episodes WHERE path IS NOT NULL"
                                  ).fetchone()[0]
            settled = db.execute("SELECT count(*) FROM feed_items").fetchone()[0]
        if archived != count or settled != count:
            raise SystemExit(f"first run archived {archived} and settled {settled} of {count}")
        walls = []
        for _ in range(runs):
            server.reset_stats()
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fetcher", "sync", "-c", str(config), "-q"],
                           check=True, timeout=600)
            walls.append(time.perf_counter() - start)
            statuses = {e.status for e in server.log}
            if statuses != {304} or len(server.log) != count:
                raise SystemExit(f"a no-op run asked more than one 304 per feed: {statuses}")
        check = subprocess.run([sys.executable, "-m", "fetcher", "sync", "-c", str(config)],
                               capture_output=True, text=True, check=True, timeout=600)
        if not re.search(rf"^up to date\s+{count}$", check.stderr, re.MULTILINE):
            raise SystemExit(f"a no-op run did not count every episode:\n{check.stderr}")
        print(f"no-op sync over {count} unchanged feeds (one 304 each, no audio): "
              f"{statistics.median(walls):.3f} s wall (median of {runs})")


def bench_feeds(runs: int, feeds: int) -> None:
    bench_parse(max(runs, 3))
    bench_reread(max(runs, 3))
    bench_settled_feed(3857, runs)
    bench_unchanged_feeds(feeds, runs)
