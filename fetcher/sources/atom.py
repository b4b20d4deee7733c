"""Atom-wrapped podcast feeds: ``<feed>`` with entries that link their audio as
``rel="enclosure"`` (plus any iTunes or Podcasting 2.0 elements they carry)."""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree

from fetcher.model import Episode, Person, Skipped, Trust
from fetcher.sources.rss import FeedPage, Show, absolute, choose_audio, padded
from fetcher.sources.values import episode_number, parse_date, parse_duration, slugify
from fetcher.sources.values import whole_number as whole
from fetcher.sources.xmlsafe import split_tag, text_of


def read_atom_page(root: etree._Element, *, source: str, base_url: str,
                   show_slug: str | None = None, trust: Trust = "own",
                   media: str = "audio") -> FeedPage:
    page = FeedPage(Show())
    show = page.show
    entries: list[etree._Element] = []
    for child in root:
        ns, name = split_tag(child.tag)
        if ns == "atom" and name == "title":
            show.title = text_of(child)
        elif ns == "atom" and name in ("logo", "icon") and not show.image:
            show.image = absolute(text_of(child), base_url)
        elif ns == "itunes" and name == "image":
            show.image = absolute(child.get("href"), base_url) or show.image
        elif ns == "atom" and name == "link" and child.get("rel") in ("next", "prev-archive"):
            target = absolute(child.get("href"), base_url)
            if target:
                page.next_pages.append(target)
        elif ns == "fh" and name == "complete":
            page.complete = True
        elif ns == "atom" and name == "entry":
            entries.append(child)
    if page.complete:
        page.next_pages = []
    show.slug = show_slug or slugify(show.title or "show")
    for index, entry in enumerate(entries, 1):
        page.entries.append(_entry(entry, index, show, source, base_url, trust, media, page))
    return page


def _entry(entry: etree._Element, index: int, show: Show, source: str, base_url: str,
           trust: Trust, media: str, page: FeedPage) -> Episode | Skipped:
    values: dict[str, str] = {}
    enclosures: list[tuple[str, str, str]] = []
    link = image = ""
    persons: list[Person] = []
    for child in entry:
        ns, name = split_tag(child.tag)
        if ns == "atom" and name == "link":
            rel = child.get("rel", "alternate")
            if rel == "enclosure":
                enclosures.append((child.get("href") or "", child.get("type") or "",
                                   child.get("length") or ""))
            elif rel == "alternate" and not link:
                link = child.get("href") or ""
        elif ns == "atom" and name == "author":
            author = text_of(child.find("{http://www.w3.org/2005/Atom}name"))
            if author:
                persons.append(Person(author))
        elif ns == "itunes" and name == "image":
            image = child.get("href") or ""
        elif ns in ("atom", "itunes", "podcast"):
            values.setdefault(f"{ns}:{name}", text_of(child))
    title = values.get("atom:title", "")
    chosen = choose_audio(enclosures[0] if enclosures else None, enclosures[1:], base_url,
                          media)
    if isinstance(chosen, str):
        return Skipped(source, f"entry {index}" + (f" ({title[:60]})" if title else "")
                       + f": {chosen}")
    audio_url, audio_type, length = chosen
    date = (parse_date(values.get("atom:published")) or parse_date(values.get("atom:updated"))
            or datetime(1970, 1, 1, tzinfo=UTC))
    number = episode_number(values.get("podcast:episode") or values.get("itunes:episode"))
    content = values.get("atom:content", "")
    summary = values.get("atom:summary", "")
    return Episode(
        guid=values.get("atom:id") or audio_url, show_slug=show.slug,
        show_name=show.title or show.slug, title=title or f"{show.slug} {date:%Y-%m-%d}",
        date=date, audio_url=audio_url, source=source, episode=number,
        episode_padded=padded(number), description=summary if content else "",
        show_notes=content or summary, hosts=tuple(p.name for p in persons),
        page_url=absolute(link, base_url),
        header_image=absolute(image, base_url) or show.image,
        expected_bytes=whole(length) or None,
        declared_duration_s=parse_duration(values.get("itunes:duration")),
        persons=tuple(persons), audio_type=audio_type or None, size_is_hint=True,
        feed_url=source, trust=trust,
    )
