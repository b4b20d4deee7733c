"""The vocabulary every stage speaks: Episode and Chapter, plus pure chapter normalisation.

Chapters arrive in the Podcasting 2.0 JSON chapters format, which in the wild has
duplicate start times, unsorted entries, ``null`` fields and string numbers.
:func:`parse_chapters` turns raw JSON into :class:`Chapter` values and
:func:`normalise_chapters` makes them a clean, non-overlapping timeline. Both are pure
and report what they dropped as warnings instead of logging, so callers decide where the
words go.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from fetcher.errors import SourceError

#: A CTOC frame counts its children in one byte.
MAX_VISIBLE_CHAPTERS = 255


@dataclass(frozen=True, slots=True)
class Chapter:
    """One chapter; times in whole milliseconds.

    ``end_ms`` is ``None`` only for the last chapter while the audio's duration is
    unknown. ``toc`` is ``False`` for chapters the publisher marked hidden.
    """

    start_ms: int
    end_ms: int | None
    title: str
    url: str | None = None
    img: str | None = None
    toc: bool = True


@dataclass(frozen=True, slots=True)
class Transcript:
    url: str
    type: str | None = None
    language: str | None = None
    rel: str | None = None


@dataclass(frozen=True, slots=True)
class Person:
    """A ``podcast:person``: a name with a role (``host``, ``guest``, ...)."""

    name: str
    role: str = "host"
    group: str = "cast"
    href: str | None = None
    img: str | None = None


#: How far a source's URLs are trusted (see :mod:`fetcher.net.guard`).
#: ``own``: what the user pointed at (local files, documents); ``remote``: supplied by a
#: feed fetched from a public address; ``remote-private``: by one on a private address.
Trust = str


@dataclass(frozen=True, slots=True)
class ItemKey:
    """Which feed item an episode was read from (see :mod:`fetcher.sources.feeditems`):
    a hash of the item's XML and of what it was read with, and a hash of the channel
    around it. An item found up to date is remembered by these."""

    item: str
    context: str


#: A settled feed item as the manifest keeps it: context, guid, archived path, size.
SettledItem = tuple[str, str, str, int]
#: A feed item to settle: feed (as configured), item key, guid, archived path, size.
ItemRow = tuple[str, ItemKey, str, str, int]


@dataclass(frozen=True, slots=True)
class EpisodeDigest:
    """What the document cache keeps of an episode for planning (see
    :mod:`fetcher.sources.doccache`): its tag fingerprint and audio URL's keyed hash."""

    fingerprint: str
    url_hash: str


@dataclass(frozen=True, slots=True)
class Episode:
    """One podcast episode, independent of the format it was read from."""

    guid: str
    show_slug: str
    show_name: str
    title: str
    date: datetime
    audio_url: str
    #: Where the episode was read: a document's path or a feed's URL.
    source: str
    #: A number, or the publisher's text when it is not one (``p01``, ``12.5``).
    episode: int | str | None = None
    episode_padded: str = ""
    description: str = ""
    show_notes: str = ""
    hosts: tuple[str, ...] = ()
    guests: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    page_url: str | None = None
    header_image: str | None = None
    expected_bytes: int | None = None
    declared_duration_s: float | None = None
    transcripts: tuple[Transcript, ...] = ()
    chapters: tuple[Chapter, ...] = field(default=())
    #: Where the chapters come from: ``document``, ``podcast:chapters``, ``psc`` or None.
    chapters_source: str | None = None
    #: A Podcasting 2.0 chapters document fetched only when the episode needs work.
    chapters_url: str | None = None
    season: int | None = None
    episode_display: str | None = None
    persons: tuple[Person, ...] = ()
    #: The enclosure's media type as the source declared it (``audio/mpeg``, ...).
    audio_type: str | None = None
    #: ``expected_bytes`` is only a hint (a feed's ``length``), not a promise.
    size_is_hint: bool = False
    #: The feed the episode was read from, for the WFED frame.
    feed_url: str | None = None
    #: Podcasting 2.0 elements present (``locked``, ``block``, ``value``, ...): recorded,
    #: never a reason to skip.
    flags: tuple[str, ...] = ()
    trust: Trust = "own"
    #: Set for a "light" episode read from the document cache: no show notes or audio
    #: URL, only what planning needs; its document is read again when it needs work.
    digest: EpisodeDigest | None = None
    #: Set for an episode read from a feed item that may be settled when up to date.
    item: ItemKey | None = None

    @property
    def label(self) -> str:
        """A short name for messages: ``show #number`` or the guid."""
        if self.episode is not None:
            return f"{self.show_slug} #{self.episode}"
        return f"{self.show_slug} {self.guid}"


@dataclass(slots=True)
class FeedRecord:
    """What is remembered of one feed between runs (keyed by the URL as configured)."""

    url: str
    final_url: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    status: str = "ok"
    gone_at: str | None = None
    #: Some episode of the feed was not archived last run: ask without validators.
    incomplete: bool = False
    fingerprint: str = ""
    title: str = ""


@dataclass(frozen=True, slots=True)
class Skipped:
    """A document that is not an episode to archive, and why."""

    source: str
    reason: str
    #: The episode a filter left out (its guid and title stay in the report).
    episode: Episode | None = None


#: What reading a source yields: an episode, a skip with its reason, or an error.
Entry = Episode | Skipped | SourceError


@dataclass(frozen=True, slots=True)
class Settled:
    """A cached document whose episodes were all up to date when last planned, whose
    archived files still have their recorded sizes, and whose manifest rows have not
    changed since: its episodes are counted up to date without being read or planned
    (see :mod:`fetcher.sources.doccache`)."""

    source: str
    guids: tuple[str, ...]


_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LINE_BREAKS = re.compile(r"[\t\n\r]+")


def clean_text(text: str, *, multiline: bool = False) -> str:
    """*text* without NUL and other control characters (a NUL separates values in ID3,
    so readers disagree about a title holding one); line breaks become spaces unless
    *multiline*."""
    text = _CONTROLS.sub("", text)
    return text if multiline else _LINE_BREAKS.sub(" ", text)


def cleaned(episode: Episode) -> tuple[Episode, list[str]]:
    """*episode* with control characters removed from its text, and a warning per field
    that had some."""
    changes: dict[str, Any] = {}
    warnings: list[str] = []
    for name in ("title", "show_name", "description", "show_notes", "episode_padded"):
        value = getattr(episode, name)
        clean = clean_text(value, multiline=name in ("description", "show_notes"))
        if clean != value:
            changes[name] = clean
            if name not in ("description", "show_notes") or "\x00" in value:
                warnings.append(f"control characters removed from the {name.replace('_', ' ')}")
    for name in ("hosts", "guests"):
        values = getattr(episode, name)
        clean_values = tuple(clean_text(v) for v in values)
        if clean_values != values:
            changes[name] = clean_values
            warnings.append(f"control characters removed from the {name}")
    return (replace(episode, **changes) if changes else episode), warnings


def _number(value: Any) -> float | None:
    """A finite, non-negative number from an int, float or numeric string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = float(value) if value < 2**63 else math.inf
    elif isinstance(value, float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return number


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def parse_chapters(raw: Any) -> tuple[list[Chapter], list[str]]:
    """Read a Podcasting 2.0 ``chapters`` array into normalised chapters.

    Entries that are not objects or have no valid ``startTime`` are dropped with a
    warning; ``null`` fields count as absent.
    """
    warnings: list[str] = []
    if raw is None:
        return [], warnings
    if isinstance(raw, dict):
        raw = raw.get("chapters")
        if raw is None:
            return [], warnings
    if not isinstance(raw, list):
        return [], [f"chapters are a {type(raw).__name__}, not a list; ignored"]
    chapters: list[Chapter] = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            warnings.append(f"chapter {index + 1} is not an object; dropped")
            continue
        start = _number(entry.get("startTime"))
        if start is None or start > 1e9:
            warnings.append(
                f"chapter {index + 1} has no valid startTime "
                f"({entry.get('startTime')!r}); dropped"
            )
            continue
        end = _number(entry.get("endTime"))
        end_ms = _ms(end) if end is not None and end <= 1e9 else None
        chapters.append(
            Chapter(
                start_ms=_ms(start),
                end_ms=end_ms,
                title=_text(entry.get("title")) or "",
                url=_text(entry.get("url")),
                img=_text(entry.get("img")),
                toc=entry.get("toc") is not False,
            )
        )
    normalised, more = normalise_chapters(chapters)
    return normalised, warnings + more


def normalise_chapters(
    chapters: Iterable[Chapter], duration_ms: int | None = None
) -> tuple[list[Chapter], list[str]]:
    """Make *chapters* a clean timeline; idempotent.

    Sorted stably by start; equal starts collapse to the first; untitled chapters are
    named ``Chapter N``; an end is kept only when it lies after the start and not after
    the next start, otherwise the chapter ends where the next begins; with a known
    *duration_ms*, chapters starting at or after it are dropped and the last one ends
    at it (or earlier, if its own end is earlier); at most 255 visible chapters remain.
    """
    warnings: list[str] = []
    ordered = sorted(chapters, key=lambda c: c.start_ms)
    unique: list[Chapter] = []
    for chapter in ordered:
        if unique and unique[-1].start_ms == chapter.start_ms:
            continue
        unique.append(chapter)
    collapsed = len(ordered) - len(unique)
    if collapsed:
        warnings.append(f"{collapsed} chapter(s) with a duplicate start time collapsed")

    if duration_ms is not None:
        kept = [c for c in unique if c.start_ms < duration_ms]
        if len(kept) < len(unique):
            warnings.append(
                f"{len(unique) - len(kept)} chapter(s) start at or after the end of the "
                f"audio ({clock(duration_ms)}); dropped"
            )
        unique = kept

    visible = 0
    limited: list[Chapter] = []
    for chapter in unique:
        if chapter.toc:
            visible += 1
            if visible > MAX_VISIBLE_CHAPTERS:
                continue
        limited.append(chapter)
    if visible > MAX_VISIBLE_CHAPTERS:
        warnings.append(
            f"{visible} visible chapters; only the first {MAX_VISIBLE_CHAPTERS} are kept"
        )

    result: list[Chapter] = []
    for index, chapter in enumerate(limited):
        limit = limited[index + 1].start_ms if index + 1 < len(limited) else duration_ms
        end = chapter.end_ms
        if end is None or end <= chapter.start_ms or (limit is not None and end > limit):
            end = limit
        title = chapter.title or f"Chapter {index + 1}"
        if end == chapter.end_ms and title == chapter.title:
            result.append(chapter)
        else:
            result.append(replace(chapter, end_ms=end, title=title))
    return result, warnings


def clock(ms: int) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour on (for chapter times in messages)."""
    seconds = ms // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"


def visible_chapters(chapters: Sequence[Chapter]) -> list[Chapter]:
    return [c for c in chapters if c.toc]


def shallow_dict(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, values as they are (``dataclasses.asdict`` deep-
    copies every value: a measurable cost per episode for flat records)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}
