"""The pictures a tag carries: the cover and chapter images, each fetched once per run."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from fetcher.errors import FetcherError
from fetcher.model import Episode
from fetcher.settings import TagSettings
from fetcher.tagging.spec import chapter_image_urls, cover_url, picture_mime

if TYPE_CHECKING:
    from fetcher.net.http import Http

log = logging.getLogger(__name__)


class Images:
    """Images by URL for one run; a failed image is a warning, never a failed episode."""

    def __init__(self, settings: TagSettings):
        self.settings = settings
        self.http: Http | None = None
        self._futures: dict[str, asyncio.Future[bytes | None]] = {}
        self._warned: set[str] = set()
        self._missing: set[str] = set()

    def cover_missing(self, episode: Episode) -> bool:
        """True when *episode* should have a cover and its tag got none this run (the
        next run tries again)."""
        return episode.guid in self._missing

    async def for_episode(self, episode: Episode) -> tuple[bytes | None, dict[str, bytes]]:
        """The cover and chapter images *episode*'s tag will carry; a cover that cannot
        be had is a warning once per show, naming what fixes it."""
        cover = None
        url = cover_url(episode, self.settings)
        if url is None and self.settings.cover and episode.header_image:
            self._warn_once(episode, f"covers skipped: the image {episode.header_image!r} "
                                     "is relative and no base URL is known; set [tags] "
                                     "image_base_url to the site it belongs to")
        if url is not None:
            cover = await self.get(episode.label, url, episode.trust)
            if cover is None:
                self._missing.add(episode.guid)
                self._warn_once(episode, "a cover could not be fetched (see the log); "
                                         "those episodes try again for it next run")
            else:
                self._missing.discard(episode.guid)
        images: dict[str, bytes] = {}
        for image_url in chapter_image_urls(episode, self.settings):
            data = await self.get(episode.label, image_url, episode.trust)
            if data is not None:
                images[image_url] = data
        return cover, images

    async def get(self, label: str, url: str, trust: str = "own") -> bytes | None:
        """An image fetched once per URL per run; None (with a warning) when it fails."""
        future = self._futures.get(url)
        if future is None:
            future = asyncio.ensure_future(self._fetch(label, url, trust))
            self._futures[url] = future
        return await asyncio.shield(future)

    async def _fetch(self, label: str, url: str, trust: str) -> bytes | None:
        if self.http is None:
            return None
        try:
            data = await self.http.fetch_small(label, url, trust=trust,
                                               max_bytes=self.settings.max_image_bytes)
        except FetcherError as error:
            log.info("%s: image skipped: %s", label, error)
            return None
        if picture_mime(data) is None:
            log.info("%s: image skipped: not JPEG or PNG", label)
            return None
        return data

    def _warn_once(self, episode: Episode, message: str) -> None:
        if episode.show_slug not in self._warned:
            self._warned.add(episode.show_slug)
            log.warning("%s: %s", episode.show_name or episode.show_slug, message)
