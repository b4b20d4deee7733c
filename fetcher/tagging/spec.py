"""What an Episode becomes in a tag: pure decisions, no mutagen.

Which cover and chapter images a tag carries (:func:`cover_url`,
:func:`chapter_image_urls`), the final chapter timeline (:func:`final_chapters`), and
the fingerprint that notices when any of it changes (:func:`tag_fingerprint`). Planning
imports this module; it must stay free of mutagen and httpx.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from fetcher.model import Chapter, Episode, normalise_chapters
from fetcher.settings import TagSettings

log = logging.getLogger(__name__)

#: A declared duration further than this from the audio's real one is reported.
DURATION_TOLERANCE_MS = 2_000


def picture_mime(data: bytes) -> str | None:
    """``image/jpeg`` or ``image/png`` by magic bytes, else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return None


def cover_url(episode: Episode, settings: TagSettings) -> str | None:
    """The absolute cover URL: ``header_image`` against ``image_base_url`` or the page."""
    if not settings.cover or not episode.header_image:
        return None
    return resolve_url(episode.header_image, image_base(episode, settings))


def chapter_image_urls(episode: Episode, settings: TagSettings) -> list[str]:
    if not settings.chapter_images:
        return []
    base = image_base(episode, settings)
    urls = (resolve_url(c.img, base) for c in episode.chapters if c.img)
    return sorted({u for u in urls if u})


def resolve_url(reference: str, base: str | None) -> str | None:
    """An absolute http(s) URL for *reference*, or None."""
    with contextlib.suppress(ValueError):
        absolute = urljoin(base, reference) if base else reference
        if urlsplit(absolute).scheme.lower() in ("http", "https"):
            return absolute
    return None


def public_url(url: str | None) -> str | None:
    """*url* for a tag that travels with the file: without query or credentials (a
    private feed's token stays out of it), or None when not http(s)."""
    if not url:
        return None
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.scheme.lower() in ("http", "https") and parts.hostname:
            host = parts.netloc.rsplit("@", 1)[-1]
            return f"{parts.scheme}://{host}{parts.path or '/'}"
    return None


def image_base(episode: Episode, settings: TagSettings) -> str | None:
    """What relative image paths resolve against: the setting, else the page's origin."""
    return settings.image_base_url or _origin(episode.page_url)


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}/"
    return None


#: What :func:`latin1_url` leaves as it is: unreserved characters and its safe ones.
_PLAIN_URL = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")


def latin1_url(url: str) -> str:
    """*url* as a URL frame carries it (ASCII): an international host name in IDNA
    (punycode), everything else that is not ASCII percent-encoded."""
    if _PLAIN_URL.fullmatch(url):
        return url  # nothing to encode (nearly every URL and guid)
    safe = ":/?#[]@!$&'()*+,;=%~"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return quote(url, safe=safe)
    if host and not host.isascii():
        try:
            ascii_host = host.encode("idna").decode("ascii")
        except UnicodeError:
            ascii_host = quote(host, safe="")
        netloc = parts.netloc.replace(host, ascii_host)
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return quote(url, safe=safe)



def final_chapters(episode: Episode, duration_ms: int | None) -> list[Chapter]:
    chapters, warnings = normalise_chapters(episode.chapters, duration_ms)
    for warning in warnings:
        log.warning("%s: %s", episode.label, warning)
    return chapters


def tag_fingerprint(episode: Episode, settings: TagSettings) -> str:
    """A hash of everything that goes into the tag, to notice metadata changes."""
    if episode.digest is not None:
        return episode.digest.fingerprint
    chapters = [
        [c.start_ms, c.end_ms, c.title, c.url, c.img, c.toc] for c in episode.chapters
    ]
    data = {
        "v": 1,
        "title": episode.title,
        "show": episode.show_name,
        "hosts": episode.hosts,
        "episode": episode.episode,
        "date": episode.date.isoformat(),
        "guid": episode.guid,
        "page": episode.page_url,
        "description": episode.description,
        "notes": episode.show_notes,
        "cover": cover_url(episode, settings),
        "chapters": chapters,
        "settings": [settings.id3_version, settings.cover, settings.image_base_url,
                     settings.chapter_images, settings.hidden_chapters],
    }
    # What only feeds carry joins the hash only when present, so that the fingerprints
    # of archived document episodes stay what they were.
    extra = {
        "chapters_url": episode.chapters_url,
        "season": episode.season,
        "persons": [[p.name, p.role] for p in episode.persons],
        "feed": episode.feed_url,
    }
    data.update({key: value for key, value in extra.items() if value})
    encoded = json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()
