"""RSS 2.0 podcast feeds (and the Atom-wrapped kind) into Episodes.

:func:`read_feed_page` turns one parsed page into :class:`FeedPage`: the episodes, the
items skipped with a reason, and the links a feed reader follows (RFC 5005 ``next`` and
``prev-archive``, ``itunes:new-feed-url``). Namespaces are matched by URI. What real
feeds get wrong is read, not refused: no guid (the enclosure URL identifies the item),
``length`` 0 or missing (the size is only a hint), dates in a dozen spellings,
durations as seconds or clock times, duplicate guids.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

from lxml import etree

from fetcher.model import Chapter, Episode, ItemKey, Person, Skipped, Transcript, Trust
from fetcher.model import normalise_chapters as _normalise
from fetcher.sources.twins import Twins
from fetcher.sources.values import (
    episode_number,
    parse_date,
    parse_duration,
    parse_npt,
    slugify,
    whole_number,
)
from fetcher.sources.xmlsafe import split_tag, text_of

log = logging.getLogger(__name__)

#: Enclosure types taken for audio although they do not say ``audio/``.
AUDIO_LIKE = frozenset({"application/ogg", "video/mp4a-latm", "application/octet-stream",
                        "binary/octet-stream"})
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".wmv", ".flv")
#: Podcasting 2.0 elements that are recorded and never a reason to skip an item.
FLAGS = frozenset({"locked", "block", "value", "soundbite", "podping", "funding", "license"})


@dataclass(slots=True)
class Show:
    """What the channel says about the show."""

    title: str = ""
    slug: str = ""
    image: str | None = None
    guid: str | None = None
    persons: tuple[Person, ...] = ()
    author: str = ""
    flags: tuple[str, ...] = ()


@dataclass(slots=True)
class FeedPage:
    show: Show
    entries: list[Episode | Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: RFC 5005: the next page of a paged feed, the previous archive document.
    next_pages: list[str] = field(default_factory=list)
    new_feed_url: str | None = None
    #: ``fh:complete``: this document holds every item (no paging).
    complete: bool = False
    #: For settled items (see :mod:`.feeditems`): a hash of what the channel gives each
    #: item, whether the item keys given matched the items one to one (their episodes
    #: carry them), and the guids of the settled items left out of this page.
    context: str = ""
    keyed: bool = False
    settled: list[str] = field(default_factory=list)


def read_feed_page(root: etree._Element, *, source: str, base_url: str,
                   show_slug: str | None = None, trust: Trust = "own",
                   media: str = "audio", item_keys: Sequence[str] | None = None) -> FeedPage:
    """Read one parsed RSS page (``root`` is ``<rss>``); see the module docstring.
    *item_keys* (one per item, in order) mark the episodes for settling."""
    channel = root.find("channel")
    if channel is None:
        for child in root:
            if split_tag(child.tag)[1] == "channel":
                channel = child
                break
    page = FeedPage(Show())
    if channel is None:
        page.warnings.append("no <channel> element: the feed holds no episodes")
        return page
    items = _read_channel(channel, page, base_url)
    show = page.show
    show.slug = show_slug or slugify(show.title or urlsplit(base_url).hostname or "show")
    page.context = _context(show, channel)
    page.keyed = item_keys is not None and len(item_keys) == len(items)
    twins = Twins()
    for index, item in enumerate(items, 1):
        key = ItemKey(item_keys[index - 1], page.context) if item_keys and page.keyed else None
        entry = _read_item(item, index, show, source=source, base_url=base_url,
                           trust=trust, media=media, warnings=page.warnings, item_key=key)
        if isinstance(entry, Episode):
            kept = twins.admit(entry, page.entries)
            if kept is None:
                page.entries.append(Skipped(source, f"item {index}: repeats guid "
                                                    f"{entry.guid} with the same audio"))
                continue
            if kept is not entry:
                page.warnings.append(f"item {index}: guid {entry.guid} is used again for "
                                     "other audio; kept as a distinct episode")
            entry = kept
        page.entries.append(entry)
    return page


def _context(show: Show, channel: etree._Element) -> str:
    """A hash of what the channel gives every item: the show, the namespaces."""
    names = sorted((prefix or "", uri) for prefix, uri in channel.nsmap.items())
    return hashlib.blake2b(repr((show, names)).encode(), digest_size=16).hexdigest()


def _read_channel(channel: etree._Element, page: FeedPage,
                  base_url: str) -> list[etree._Element]:
    show = page.show
    items: list[etree._Element] = []
    persons: list[Person] = []
    flags: list[str] = []
    for child in channel:
        ns, name = split_tag(child.tag)
        if name == "item" and ns == "":
            items.append(child)
        elif ns == "" and name == "title":
            show.title = text_of(child)
        elif ns == "" and name == "image":
            url = text_of(child.find("url"))
            show.image = show.image or absolute(url, base_url)
        elif ns == "itunes" and name == "image":
            show.image = absolute(child.get("href") or text_of(child), base_url) or show.image
        elif ns == "itunes" and name == "author":
            show.author = text_of(child)
        elif ns == "itunes" and name == "new-feed-url":
            page.new_feed_url = absolute(text_of(child), base_url)
        elif ns == "atom" and name == "link":
            rel, href = child.get("rel", ""), child.get("href")
            if rel in ("next", "prev-archive") and href:
                target = absolute(href, base_url)
                if target:
                    page.next_pages.append(target)
        elif ns == "fh" and name == "complete":
            page.complete = True
        elif ns == "podcast":
            if name == "guid":
                show.guid = text_of(child) or None
            elif name == "person":
                person = _person(child, base_url)
                if person is not None:
                    persons.append(person)
            elif name in FLAGS:
                flags.append(name)
    show.persons = tuple(persons)
    show.flags = tuple(dict.fromkeys(flags))
    if page.complete:
        page.next_pages = []
    return items


#: The item elements read, by (namespace key, local name).
_ITEM_KEYS = {
    ("", "guid"): "guid", ("", "title"): "title", ("", "description"): "description",
    ("", "pubDate"): "pubDate", ("", "enclosure"): "enclosure", ("", "link"): "link",
    ("itunes", "duration"): "itunes:duration", ("itunes", "episode"): "itunes:episode",
    ("itunes", "season"): "itunes:season", ("itunes", "image"): "itunes:image",
    ("itunes", "title"): "itunes:title", ("itunes", "summary"): "itunes:summary",
    ("podcast", "chapters"): "podcast:chapters", ("podcast", "episode"): "podcast:episode",
    ("podcast", "season"): "podcast:season", ("content", "encoded"): "content:encoded",
    ("psc", "chapters"): "psc:chapters", ("atom", "link"): "atom:link",
    ("media", "content"): "media:content", ("dc", "date"): "dc:date",
    ("podcast", "transcript"): "podcast:transcript*", ("podcast", "person"): "person*",
    ("podcast", "alternateEnclosure"): "alternate*",
    **{("podcast", flag): "flag*" for flag in FLAGS},
}
_TAG_KEYS: dict[str, str | None] = {}


def _item_key(tag: object) -> str | None:
    if not isinstance(tag, str):
        return None
    key = _TAG_KEYS.get(tag, "")
    if key == "":
        key = _ITEM_KEYS.get(split_tag(tag))
        if len(_TAG_KEYS) < 4096:
            _TAG_KEYS[tag] = key
    return key


def _read_item(item: etree._Element, index: int, show: Show, *, source: str, base_url: str,
               trust: Trust, media: str, warnings: list[str],
               item_key: ItemKey | None = None) -> Episode | Skipped:
    # One pass over the children, each looked up once by its raw tag: feeds have
    # thousands of items, and this loop is most of a feed's parsing time.
    found: dict[str, etree._Element] = {}
    texts: dict[str, str] = {}
    many: dict[str, list[etree._Element]] = {}
    for child in item:
        key = _item_key(child.tag)
        if key is None:
            continue
        if key[-1] == "*":
            many.setdefault(key, []).append(child)
        elif key not in found:
            found[key] = child
            value = child.text
            if value:
                texts[key] = value.strip()

    text = texts.get
    title = text("title", "") or text("itunes:title", "")
    enclosure = _enclosure(found.get("enclosure")) or _enclosure(found.get("media:content"),
                                                                 length="fileSize")
    alternates = ([a for e in many["alternate*"] for a in _alternate(e)]
                  if "alternate*" in many else [])
    chosen = choose_audio(enclosure, alternates, base_url, media)
    name_for = f"item {index}" + (f" ({title[:60]})" if title else "")
    if isinstance(chosen, str):
        return Skipped(source, f"{name_for}: {chosen}")
    audio_url, audio_type, length = chosen

    date_text = text("pubDate") or text("dc:date")
    date = parse_date(date_text)
    if date is None:
        if date_text:
            warnings.append(f"{name_for}: date {date_text!r} is not a date; 1970-01-01 used")
        date = datetime(1970, 1, 1, tzinfo=UTC)
    persons = (tuple(p for e in many["person*"] if (p := _person(e, base_url)))
               if "person*" in many else ())
    cast = persons or show.persons
    transcripts = tuple(
        Transcript(url, e.get("type"), e.get("language"), e.get("rel"))
        for e in many["podcast:transcript*"]
        if (url := absolute(e.get("url"), base_url))
    ) if "podcast:transcript*" in many else ()
    chapters_element = found.get("podcast:chapters")
    chapters_url = (absolute(chapters_element.get("url"), base_url)
                    if chapters_element is not None else None)
    psc_element = found.get("psc:chapters")
    psc = _psc_chapters(psc_element, warnings, index) if psc_element is not None else ()
    episode_element = found.get("podcast:episode")
    number = episode_number(text("podcast:episode") or text("itunes:episode"))
    season = episode_number(text("podcast:season") or text("itunes:season"))
    image_element = found.get("itunes:image")
    image = (image_element.get("href") or text("itunes:image", "")
             if image_element is not None else "")
    link = text("link", "")
    if not link and "atom:link" in found:
        link = found["atom:link"].get("href") or ""
    content = text("content:encoded", "")
    description = text("description") or text("itunes:summary", "")
    flags = [split_tag(e.tag)[1] for e in many["flag*"]] if "flag*" in many else []
    return Episode(
        guid=text("guid") or audio_url,
        show_slug=show.slug,
        show_name=show.title or show.slug,
        title=title or f"{show.title or show.slug} {date:%Y-%m-%d}",
        date=date,
        audio_url=audio_url,
        source=source,
        episode=number,
        episode_padded=padded(number),
        description=description if content else "",
        show_notes=content or description,
        hosts=tuple(p.name for p in cast if p.role == "host") if cast else (),
        guests=tuple(p.name for p in persons if p.role == "guest") if persons else (),
        page_url=absolute(link, base_url),
        header_image=absolute(image, base_url) or show.image,
        expected_bytes=whole_number(length) or None,
        declared_duration_s=parse_duration(text("itunes:duration")),
        transcripts=transcripts,
        chapters=tuple(psc),
        chapters_source="podcast:chapters" if chapters_url else ("psc" if psc else None),
        chapters_url=chapters_url,
        season=season if isinstance(season, int) else None,
        episode_display=episode_element.get("display") if episode_element is not None else None,
        persons=cast,
        audio_type=audio_type or None,
        size_is_hint=True,
        feed_url=source,
        flags=tuple(dict.fromkeys([*show.flags, *flags])) if flags else show.flags,
        trust=trust,
        item=item_key,
    )


def _enclosure(element: etree._Element | None,
               length: str = "length") -> tuple[str, str, str] | None:
    if element is None:
        return None
    return element.get("url") or "", element.get("type") or "", element.get(length) or ""


def padded(number: int | str | None) -> str:
    if number is None:
        return ""
    return f"{number:04d}" if isinstance(number, int) else str(number)


def _is_audio(url: str, kind: str) -> bool:
    """Audio by its declared type; without one, anything but a video file name (the
    downloader sniffs the first bytes anyway)."""
    kind = kind.split(";")[0].strip().lower()
    if kind.startswith("audio/") or (kind in AUDIO_LIKE and kind):
        return True
    if not kind:
        return not urlsplit(url).path.lower().endswith(VIDEO_SUFFIXES)
    return False


def choose_audio(enclosure: tuple[str, str, str] | None,
                  alternates: list[tuple[str, str, str]], base_url: str,
                  media: str) -> tuple[str, str, str] | str:
    """(url, type, length) of the audio to archive, or the reason there is none."""
    if enclosure is not None:  # the common case: one absolute audio enclosure
        url, kind, length = enclosure
        if (kind.startswith("audio/") and url.startswith(("http://", "https://"))
                and " " not in url and ";" not in kind):
            return url, kind, length
    candidates = [enclosure, *alternates] if enclosure else alternates
    if not candidates or not any(c[0] for c in candidates):
        return "no enclosure"
    for url, kind, length in candidates:
        full = absolute(url, base_url)
        if full and (media == "any" or _is_audio(full, kind)):
            return full, kind.split(";")[0].strip().lower(), length
    kinds = ", ".join(sorted({c[1] or "no type" for c in candidates}))
    if any(c[1].lower().startswith("video/") for c in candidates):
        return f"video ({kinds}) and only audio is archived ([feeds] media)"
    if not any(absolute(c[0], base_url) for c in candidates):
        return "enclosure URL is not http(s)"
    return f"enclosure is not audio ({kinds})"


def _alternate(element: etree._Element) -> list[tuple[str, str, str]]:
    kind = element.get("type") or ""
    length = element.get("length") or ""
    found = []
    for source in element:
        if split_tag(source.tag) == ("podcast", "source") and source.get("uri"):
            found.append((source.get("uri") or "", kind, length))
    return found


def _person(element: etree._Element, base_url: str) -> Person | None:
    name = text_of(element)
    if not name:
        return None
    return Person(name=name, role=(element.get("role") or "host").lower(),
                  group=(element.get("group") or "cast").lower(),
                  href=absolute(element.get("href"), base_url),
                  img=absolute(element.get("img"), base_url))


def _psc_chapters(element: etree._Element, warnings: list[str], index: int) -> list[Chapter]:
    chapters = []
    for child in element:
        if split_tag(child.tag) != ("psc", "chapter"):
            continue
        start = parse_npt(child.get("start"))
        if start is None:
            warnings.append(f"item {index}: psc chapter start {child.get('start')!r} "
                            "is not a time; dropped")
            continue
        chapters.append(Chapter(start_ms=start, end_ms=None,
                                title=(child.get("title") or "").strip(),
                                url=child.get("href") or None, img=child.get("image") or None))
    normalised, more = _normalise(chapters)
    warnings += [f"item {index}: {w}" for w in more]
    return normalised


def absolute(url: str | None, base_url: str) -> str | None:
    """An absolute http(s) URL for *url* (relative ones against *base_url*), or None."""
    if not url:
        return None
    url = url.strip()
    head = url[:8].lower()
    if head.startswith(("http://", "https://")) and " " not in url:
        return url  # already absolute: the common case, without a parse
    try:
        absolute = urljoin(base_url, url) if base_url else url
        scheme = urlsplit(absolute).scheme.lower()
    except ValueError:
        return None
    return absolute if scheme in ("http", "https") else None
