"""Wording: how results look to a person and as JSON. Only the CLI calls this."""

from __future__ import annotations

from typing import Any

from fetcher.errors import SourceError
from fetcher.model import Chapter, Episode, Skipped


def clock(ms: int) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour on."""
    seconds = ms // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"


def size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def chapter_json(chapter: Chapter) -> dict[str, Any]:
    return {
        "start_ms": chapter.start_ms,
        "end_ms": chapter.end_ms,
        "title": chapter.title,
        "url": chapter.url,
        "toc": chapter.toc,
    }


def entry_json(entry: Episode | Skipped | SourceError) -> dict[str, Any]:
    """One object of ``fetcher show --json``."""
    base: dict[str, Any] = {
        "source": None,
        "status": None,
        "reason": None,
        "guid": None,
        "show_slug": None,
        "episode": None,
        "title": None,
        "url": None,
        "expected_bytes": None,
        "chapters": [],
    }
    if isinstance(entry, Episode):
        base.update(
            source=str(entry.source),
            status="episode",
            guid=entry.guid,
            show_slug=entry.show_slug,
            episode=entry.episode,
            title=entry.title,
            url=entry.audio_url,
            expected_bytes=entry.expected_bytes,
            chapters=[chapter_json(c) for c in entry.chapters],
        )
    elif isinstance(entry, Skipped):
        base.update(source=str(entry.source), status="skipped", reason=entry.reason)
    else:
        base.update(source=str(entry.path), status="error", reason=str(entry))
    return base


def entry_text(entry: Episode | Skipped | SourceError) -> list[str]:
    """The lines ``fetcher show`` prints for one entry."""
    if isinstance(entry, Skipped):
        return [f"skipped  {entry.source}: {entry.reason}"]
    if isinstance(entry, SourceError):
        return [f"error    {entry}"]
    number = f"#{entry.episode}" if entry.episode is not None else entry.guid
    lines = [
        f"{entry.show_slug} {number}  {entry.title}  "
        f"({size(entry.expected_bytes)}, {entry.date:%Y-%m-%d}, "
        f"{len(entry.chapters)} chapters)"
    ]
    for chapter in entry.chapters:
        hidden = "  [hidden]" if not chapter.toc else ""
        lines.append(f"    {clock(chapter.start_ms):>8}  {chapter.title}{hidden}")
    return lines


def show_summary(episodes: int, skipped: int, errors: int) -> str:
    return f"{episodes} episodes, {skipped} skipped, {errors} errors"
