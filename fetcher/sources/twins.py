"""Guids repeated inside one feed (in a page, or across the pages of a paged feed)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fetcher.model import Episode


class Twins:
    """Guids already read in one feed: an episode repeating one with the same audio is
    a repeat, with other audio a distinct episode (guid ``guid#audio URL``). Neither
    twin settles (see :mod:`.feeditems`): which one is which depends on their order."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, int]] = {}

    def admit(self, episode: Episode, entries: list[Any]) -> Episode | None:
        """*episode* as it is to be appended to *entries* (renamed when its guid was
        read for other audio), or None when it repeats one of them."""
        first_url, at = self._seen.get(episode.guid, (None, 0))
        if first_url is not None:
            first = entries[at]
            if isinstance(first, Episode) and first.item is not None:
                entries[at] = replace(first, item=None)
            if first_url == episode.audio_url:
                return None
            episode = replace(episode, guid=f"{episode.guid}#{episode.audio_url}", item=None)
        self._seen[episode.guid] = (episode.audio_url, len(entries))
        return episode
