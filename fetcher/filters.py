"""Which episodes to archive: by date, by the newest N of a show, by title.

Filters apply after the sources are read and before the plan: an episode filtered out
becomes a skip with the reason, and nothing about it is remembered, so that widening
a filter later simply archives what it now admits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from fetcher.errors import ConfigError
from fetcher.model import Entry, Episode, Skipped


@dataclass(frozen=True, slots=True)
class Filters:
    since: date | None = None
    until: date | None = None
    latest: int | None = None
    match: re.Pattern[str] | None = None
    exclude: re.Pattern[str] | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.since, self.until, self.latest, self.match,
                                           self.exclude))

    def why_not(self, episode: Episode) -> str | None:
        """The reason *episode* is filtered out (``latest`` aside), or None."""
        day = episode.date.astimezone(UTC).date()
        if self.since is not None and day < self.since:
            return f"published {day}, before since {self.since}"
        if self.until is not None and day > self.until:
            return f"published {day}, after until {self.until}"
        if self.match is not None and not self.match.search(episode.title):
            return f"title does not match {self.match.pattern!r}"
        if self.exclude is not None and self.exclude.search(episode.title):
            return f"title matches exclude {self.exclude.pattern!r}"
        return None


NO_FILTERS = Filters()


def make_filters(*, since: str | None = None, until: str | None = None,
                 latest: int | None = None, match: str | None = None,
                 exclude: str | None = None, key: str = "") -> Filters:
    """Filters from text values; ConfigError naming *key* when one is malformed."""
    return Filters(_date(since, f"{key}since"), _date(until, f"{key}until"),
                   _latest(latest, f"{key}latest"), _regex(match, f"{key}match"),
                   _regex(exclude, f"{key}exclude"))


def _date(value: str | None, key: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"must be a date like 2024-01-31, not {value!r}", key=key) from None


def _latest(value: int | None, key: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        raise ConfigError(f"must be a whole number from 1, not {value!r}", key=key)
    return value


def _regex(value: str | None, key: str) -> re.Pattern[str] | None:
    if value is None:
        return None
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"is not a regular expression: {exc}", key=key) from None


def apply_filters(entries: Iterable[Entry], per_source: Callable[[str], Filters],
                  everywhere: Filters = NO_FILTERS) -> list[Entry]:
    """*entries* with episodes filtered out replaced by skips naming the reason."""
    entries = list(entries)
    known: dict[str, Filters] = {}

    def filters_of(source: str) -> Filters:
        found = known.get(source)
        if found is None:
            found = known[source] = per_source(source)
        return found

    if not everywhere.active and not any(
            filters_of(e.source).active for e in entries if isinstance(e, Episode)):
        return entries  # the common case: nothing is filtered anywhere
    result: list[Entry] = []
    newest: dict[tuple[str, str, int], set[int]] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, Episode):
            continue
        for filters in (filters_of(entry.source), everywhere):
            if filters.latest is not None:
                newest.setdefault((entry.source if filters is not everywhere else "",
                                   entry.show_slug, filters.latest), set()).add(index)
    keep_latest: dict[int, bool] = {}
    for (_, _, count), indices in newest.items():
        ranked = sorted(indices, key=lambda i: _when(entries[i]), reverse=True)
        for position, i in enumerate(ranked):
            keep_latest[i] = keep_latest.get(i, True) and position < count
    for index, entry in enumerate(entries):
        if isinstance(entry, Episode):
            reason = filters_of(entry.source).why_not(entry) or everywhere.why_not(entry)
            if reason is None and not keep_latest.get(index, True):
                reason = "not among the latest episodes of its show"
            if reason is not None:
                entry = Skipped(entry.source, f"filtered out: {reason}", entry)
        result.append(entry)
    return result


def _when(entry: Entry) -> datetime:
    assert isinstance(entry, Episode)
    return entry.date
