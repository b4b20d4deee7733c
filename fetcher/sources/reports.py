"""What reading a source reports, and what the feed reader asks of the archive.

Kept apart from the feed reader (:mod:`fetcher.sources.feeds`), which brings lxml: a
run over episode documents alone never imports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from fetcher.errors import redact_url, shown_source
from fetcher.model import FeedRecord, ItemRow, SettledItem


class FeedStates(Protocol):
    def get_feed(self, url: str) -> FeedRecord | None: ...
    def save_feed(self, record: FeedRecord) -> None: ...
    def settled_items(self, url: str) -> tuple[dict[str, SettledItem], str]:
        """The feed's settled items by hash, and the archive directory they are in."""
        ...
    def forget_items(self, url: str, items: list[str]) -> None: ...
    def settle_items(self, rows: Iterable[ItemRow]) -> None:
        """Remember items found up to date: (feed URL, key, guid, archived path, size)."""
        ...


@dataclass
class SourceReport:
    """How reading one source went (one per feed, OPML list or document path)."""

    source: str
    kind: str
    status: str = "ok"
    final_url: str | None = None
    episodes: int = 0
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        return {"source": shown_source(self.source),
                "kind": self.kind, "status": self.status,
                "final_url": redact_url(self.final_url) if self.final_url else None,
                "episodes": self.episodes, "error": self.error}
