"""One-file operations of the library: what ``fetcher tag`` does, usable from code."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fetcher.config import Config
from fetcher.duration import measure_duration_ms
from fetcher.errors import FetcherError, SourceError, TagError, is_url, redact_url
from fetcher.model import Episode
from fetcher.sources import Entry, Loaded, read_sources
from fetcher.sources.documents import read_document
from fetcher.tagging.spec import cover_url, picture_mime
from fetcher.tagging.writer import Tagged, write_tags

log = logging.getLogger(__name__)


def read_one_episode(document: Path) -> Episode:
    """The single episode *document* holds; SourceError otherwise."""
    episodes = [e for e in read_document(document) if isinstance(e, Episode)]
    if len(episodes) != 1:
        raise SourceError(document, f"holds {len(episodes)} episodes; tag needs exactly one")
    return episodes[0]


def tag_file(mp3: Path, document: Path, config: Config) -> Tagged:
    """Tag an existing MP3 from one episode document (cover fetched when configured).

    The file is rewritten through a temporary sibling, so an interruption leaves the
    old file whole. Raises SourceError, TagError or FetcherError.
    """
    episode = read_one_episode(document)
    if not mp3.is_file():
        raise TagError(mp3, "no such file")
    duration = measure_duration_ms(mp3)
    if duration is None:
        raise TagError(mp3, "no MPEG audio frames found; not tagged")
    cover = asyncio.run(fetch_cover(config, episode))
    return write_tags(mp3, episode, duration_ms=duration, settings=config.tags, cover=cover,
                      in_place=False)


async def fetch_cover(config: Config, episode: Episode) -> bytes | None:
    """The episode's cover image, or None (with a warning) when it cannot be had."""
    url = cover_url(episode, config.tags)
    if url is None:
        return None
    from fetcher.net.http import Http

    async with Http(config.download) as http:
        try:
            data = await http.fetch_small(episode.label, url,
                                          max_bytes=config.tags.max_image_bytes)
        except FetcherError as error:
            log.warning("%s: cover skipped: %s", episode.label, error)
            return None
    return data if picture_mime(data) else None


async def read_for_show(config: Config, names: list[str]) -> Loaded:
    """The sources as ``fetcher show`` lists them: every episode with its chapters,
    those a feed names by URL fetched too (nothing is remembered or written)."""
    from fetcher.extras import Chapters
    from fetcher.sync import read_options

    loaded = await read_sources(names, read_options(config, None))
    if not any(isinstance(e, Episode) and e.chapters_url for e in loaded.entries):
        return loaded
    from fetcher.net.http import Http

    chapters = Chapters(None)
    async with Http(config.download) as http:
        chapters.http = http
        resolved = await asyncio.gather(*(
            chapters.resolve(e) if isinstance(e, Episode) else _same(e)
            for e in loaded.entries
        ))
    loaded.entries = list(resolved)
    return loaded


async def _same(entry: Entry) -> Entry:
    return entry


def feeds_as_opml(config: Config) -> str:
    """The archive's feeds (the config's and those the manifest remembers) as OPML."""
    from fetcher.sources.opml import Subscription, write_opml
    from fetcher.store import Archive
    from fetcher.store.manifest import Manifest

    subscriptions: dict[str, Subscription] = {}
    for name in config.sources.names:
        if is_url(name):
            subscriptions[name] = Subscription(name)
    manifest = Manifest.open_readonly(Archive(config.archive.dir).manifest_path)
    if manifest is not None:
        try:
            for feed in manifest.feeds():
                known = next((s for s in subscriptions.values()
                              if redact_url(s.url) == feed.url), None)
                if known is not None:
                    subscriptions[known.url] = Subscription(known.url, feed.title)
                else:
                    subscriptions.setdefault(feed.url, Subscription(feed.url, feed.title))
        finally:
            manifest.close()
    return write_opml(subscriptions.values(), title="fetcher archive")
