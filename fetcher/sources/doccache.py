"""A cache of what episode documents hold, keyed by (path, size, mtime).

A cron run over a big archive reads thousands of documents that have not changed since
the last run. For each one, the manifest keeps a digest of its entries: what the plan
needs to see that an episode is up to date (guid, keyed hash of the audio URL, size,
tag fingerprint) and what the report shows (show, title, number, date). An unchanged
document then costs a stat instead of a parse. Entries read from the cache are "light"
episodes (:attr:`Episode.digest` is set, the show notes are not there); when the plan
finds one needs work, its document is read again in full.

The digest depends on the tag settings (the fingerprint does): other settings, other
cache key.

A document goes one step further when a run finds all its episodes up to date: it is
*settled*, and its row keeps each episode's guid, archived file and size. While the
document, its manifest rows (any write to them unsettles it: triggers in the schema)
and those files' sizes stay the same, the next run counts its episodes up to date from
that alone: two stats per episode, no entries built, nothing planned.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from fetcher.errors import SourceError
from fetcher.model import Entry, Episode, EpisodeDigest, Settled, Skipped, Transcript

#: (size, mtime_ns, settings key, JSON of the entries, settled JSON or None) by path.
CachedRows = dict[str, tuple[int, int, str, str, str | None]]


@dataclass
class DocumentCache:
    """The cache for one run: rows loaded from the manifest, and new rows to save."""

    rows: CachedRows
    settings_key: str
    fingerprint: Callable[[Episode], str]
    url_hash: Callable[[str], str]
    new_rows: list[tuple[str, int, int, str, str]] = field(default_factory=list)
    #: Rows for a batch of paths, when they are read batch by batch (else all are in
    #: *rows* from the start).
    fetch: Callable[[list[str]], CachedRows] | None = None
    #: The archive's directory, which settled documents' files are under.
    root: str = ""
    #: Where new rows go after each batch (else they wait in *new_rows*).
    save: Callable[[list[tuple[str, int, int, str, str]]], None] | None = None

    def load(self, paths: list[str]) -> None:
        """Hold the rows of *paths* only (the batch about to be read)."""
        if self.fetch is not None:
            self.rows = self.fetch(paths)

    def flush(self) -> None:
        """Save the rows made since the last flush (by the thread that made them)."""
        if self.save is not None and self.new_rows:
            self.save(self.new_rows)
            self.new_rows = []

    def get(self, path: str, size: int, mtime_ns: int,
            settled: bool = False) -> list[Entry] | Settled | None:
        """The entries cached for the document (None: read it). With *settled*, a
        settled document whose archived files all have their recorded sizes comes back
        as :class:`Settled` (no entries built)."""
        row = self.rows.get(path)
        if row is None or row[0] != size or row[1] != mtime_ns or row[2] != self.settings_key:
            return None
        if settled and row[4] and self.root and (done := _settled(path, row[4], self.root)):
            return done
        try:
            entries: list[Entry] = [_entry(item, path) for item in json.loads(row[3])]
        except (ValueError, KeyError, TypeError):
            return None
        return entries

    def put(self, path: str, size: int, mtime_ns: int, entries: list[Entry]) -> None:
        if any(isinstance(e, SourceError) for e in entries):
            return  # a broken document is read again (and reported) every run
        items = [self._item(e) for e in entries if isinstance(e, Episode | Skipped)]
        self.new_rows.append((path, size, mtime_ns, self.settings_key,
                              json.dumps(items, ensure_ascii=False, separators=(",", ":"))))

    def _item(self, entry: Episode | Skipped) -> dict[str, Any]:
        if isinstance(entry, Skipped):
            return {"skip": entry.reason}
        return {
            "g": entry.guid, "s": entry.show_slug, "n": entry.show_name, "t": entry.title,
            "d": entry.date.isoformat(), "e": entry.episode, "p": entry.episode_padded,
            "u": self.url_hash(entry.audio_url), "b": entry.expected_bytes,
            "f": self.fingerprint(entry),
            "tr": [[t.url, t.type, t.language, t.rel] for t in entry.transcripts],
        }


def _entry(item: dict[str, Any], path: str) -> Episode | Skipped:
    if "skip" in item:
        return Skipped(path, str(item["skip"]))
    transcripts = tuple(Transcript(*t) for t in item.get("tr", ()))
    return Episode(
        guid=item["g"], show_slug=item["s"], show_name=item["n"], title=item["t"],
        date=datetime.fromisoformat(item["d"]), audio_url="", source=path,
        episode=item["e"], episode_padded=item["p"], expected_bytes=item["b"],
        transcripts=transcripts, digest=EpisodeDigest(item["f"], item["u"]),
    )


def _settled(path: str, text: str, root: str) -> Settled | None:
    """The document as :class:`Settled` when each archived file ([guid, path in the
    archive, size] in *text*) still has its size under *root*."""
    try:
        files = json.loads(text)
        if not all(has_size(root, name, size) for _, name, size in files):
            return None
        return Settled(path, tuple(guid for guid, _, _ in files))
    except (ValueError, TypeError):
        return None


def has_size(root: str, name: str, size: int) -> bool:
    """True when the archived file *name* (relative to *root*) is there with *size*
    bytes: what a settled document or feed item is checked by."""
    try:
        # Text paths, no Path objects: this is most of a big archive's no-op run.
        return os.stat(f"{root}/{name}").st_size == size  # noqa: PTH116
    except (OSError, ValueError):
        return False


def settled_json(files: list[tuple[str, str, int]]) -> str:
    """What :func:`_settled` reads: each episode's guid, archived file and its size."""
    return json.dumps(files, ensure_ascii=False, separators=(",", ":"))


def full(episode: Episode) -> bool:
    """True for an episode read from its document (not a light one from the cache)."""
    return episode.digest is None


def as_light(episode: Episode, fingerprint: str, url_hash: str) -> Episode:
    return replace(episode, digest=EpisodeDigest(fingerprint, url_hash))
