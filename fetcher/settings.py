"""The settings of the download and tag stages, kept apart from the stages themselves
so that reading a configuration (or planning a no-op run) imports neither httpx nor
mutagen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fetcher._version import __version__

DEFAULT_USER_AGENT = f"fetcher/{__version__} (podcast archiver; +https://pypi.org/project/fetcher/)"


@dataclass(frozen=True, slots=True)
class DownloadSettings:
    jobs: int = 4
    #: Downloads at once from one host (``jobs`` bounds them too, so by default one
    #: host gets every job asked for, up to 4: most shows come from one CDN host).
    per_host: int = 4
    retries: int = 5
    backoff: float = 1.0
    timeout: float = 30.0
    user_agent: str = DEFAULT_USER_AGENT
    size_mismatch: Literal["fail", "accept"] = "fail"
    max_redirects: int = 10
    #: Upper bound for a body whose size nobody announced.
    max_bytes: int = 4 * 1024**3
    #: A body slower than this many bytes per second, over ``speed_window`` seconds,
    #: counts as stalled (a server dripping bytes never trips the read timeout).
    min_speed: int = 1024
    speed_window: float = 60.0
    #: The longest one request may wait between its retries, all waits added up
    #: (a ``Retry-After: 86400`` ends the retries instead of stalling the run).
    max_retry_wait: float = 600.0
    #: Let URLs that a public feed supplies reach loopback and private addresses.
    allow_private_addresses: bool = False
    #: A PEM file of certificate authorities trusted besides the usual ones (a feed
    #: host behind a private CA); None: only the usual ones.
    ca_file: str | None = None
    #: An ``http://`` proxy every request goes through (the environment's proxy
    #: variables are ignored, so that a cron job behaves as it did when tried by hand).
    proxy: str | None = None


@dataclass(frozen=True, slots=True)
class FeedSettings:
    #: Pages of a paged or archived feed (RFC 5005) followed at most.
    max_pages: int = 500
    #: ``audio``: video enclosures are skipped with a reason; ``any``: archived too.
    media: Literal["audio", "any"] = "audio"
    #: The filename template for feed episodes (documents use ``[archive] filename``).
    filename: str = "{show_slug}/{date:%Y-%m-%d} - {title}.{ext}"
    #: Chapters and transcripts larger than this are refused.
    max_document_bytes: int = 16 * 1024 * 1024
    #: Feeds (one page) larger than this are refused.
    max_feed_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TagSettings:
    id3_version: Literal[3, 4] = 3
    cover: bool = True
    image_base_url: str | None = None
    chapter_images: bool = False
    hidden_chapters: Literal["omit", "untoc"] = "omit"
    max_image_bytes: int = 1024 * 1024
