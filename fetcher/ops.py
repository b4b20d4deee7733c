"""One-file operations of the library: what ``fetcher tag`` does, usable from code."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fetcher.audio import measure_duration_ms
from fetcher.config import Config
from fetcher.errors import FetcherError, SourceError, TagError
from fetcher.model import Episode
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
