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

    async def for_episode(self, episode: Episode) -> tuple[bytes | None, dict[str, bytes]]:
        """The cover and chapter images *episode*'s tag will carry."""
        cover = None
        url = cover_url(episode, self.settings)
        if url is not None:
            cover = await self.get(episode.label, url, episode.trust)
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
            log.warning("%s: image skipped: %s", label, error)
            return None
        if picture_mime(data) is None:
            log.warning("%s: image skipped: not JPEG or PNG", label)
            return None
        return data
