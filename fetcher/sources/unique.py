"""Which guids a run has read already: a guid read twice is skipped the second time,
naming where it was first read.

The guids of earlier batches are kept in a private temporary SQLite database (on disk,
deleted when it is closed), not in a dict: a run over a big archive then holds only
the current batch's guids in memory, whatever the archive's size. Should the temporary
database fail (no room for temporary files), the guids are kept in memory instead.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Sequence

from fetcher.model import Entry, Episode, Settled, Skipped, cleaned
from fetcher.store.schema import rows_in

log = logging.getLogger(__name__)



class SeenGuids:
    """The guids read so far in a run, with the source that read each first."""

    def __init__(self) -> None:
        self._db: sqlite3.Connection | None = None
        self._memory: dict[str, str] | None = None

    def earlier(self, guids: list[str]) -> dict[str, str]:
        """Those of *guids* read before, with where each was first read."""
        if self._memory is not None:
            return {g: self._memory[g] for g in guids if g in self._memory}
        if self._db is None or not guids:
            return {}
        try:
            return dict(rows_in(self._db, "SELECT guid, source FROM seen WHERE guid IN", guids))
        except sqlite3.Error as exc:
            self._fall_back(exc)
            return self.earlier(guids)

    def add(self, first: dict[str, str]) -> None:
        """Remember *first* (guid: source) as read."""
        if not first:
            return
        if self._memory is not None:
            self._memory.update(first)
            return
        try:
            if self._db is None:
                self._db = sqlite3.connect("", check_same_thread=False)
                self._db.execute("PRAGMA journal_mode = OFF")
                self._db.execute("PRAGMA synchronous = OFF")
                self._db.execute("CREATE TABLE seen (guid TEXT PRIMARY KEY, source TEXT NOT NULL)"
                                 " WITHOUT ROWID")
            with self._db:
                self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?)", first.items())
        except sqlite3.Error as exc:
            self._fall_back(exc)
            self.add(first)

    def _fall_back(self, exc: sqlite3.Error) -> None:
        log.warning("the guids read so far are kept in memory (temporary database: %s)", exc)
        self._memory = {}
        if self._db is not None:
            # Should this fail too, what it held is lost (the warning above says so).
            with contextlib.suppress(sqlite3.Error):
                self._memory.update(self._db.execute("SELECT guid, source FROM seen"))
            self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class Unique:
    """Entries with a guid read before turned into skips naming the first source."""

    def __init__(self) -> None:
        self.seen = SeenGuids()

    def entries(self, entries: Sequence[Entry | Settled]) -> list[Entry | Settled]:
        ready: list[Entry | Settled] = []
        guids: list[str] = []
        for entry in entries:
            if isinstance(entry, Episode) and entry.digest is None:
                entry, warnings = cleaned(entry)  # cached entries were cleaned when cached
                for warning in warnings:
                    log.warning("%s: %s", entry.label, warning)
            if isinstance(entry, Episode):
                guids.append(entry.guid)
            elif isinstance(entry, Settled):
                guids += entry.guids
            ready.append(entry)
        first = self.seen.earlier(guids)
        new: dict[str, str] = {}
        result: list[Entry | Settled] = []
        for entry in ready:
            if isinstance(entry, Settled):
                result += self._settled(entry, first, new)
            elif isinstance(entry, Episode):
                source = first.get(entry.guid) or new.get(entry.guid)
                if source is not None:
                    result.append(_repeat(entry.source, entry.guid, source))
                else:
                    new[entry.guid] = entry.source
                    result.append(entry)
            else:
                result.append(entry)
        self.seen.add(new)
        return result

    @staticmethod
    def _settled(entry: Settled, first: dict[str, str],
                 new: dict[str, str]) -> list[Entry | Settled]:
        """A settled document's guids taken; one read before makes that episode a skip,
        as it would have been had the document been read."""
        skips: list[Entry | Settled] = []
        rest: list[str] = []
        for guid in entry.guids:
            source = first.get(guid) or new.get(guid)
            if source is not None:
                skips.append(_repeat(entry.source, guid, source))
            else:
                new[guid] = entry.source
                rest.append(guid)
        if not skips:
            return [entry]
        return [*skips, Settled(entry.source, tuple(rest))] if rest else skips

    def close(self) -> None:
        self.seen.close()


def _repeat(source: str, guid: str, first: str) -> Skipped:
    log.warning("%s: guid %s was already read from %s; this copy is ignored",
                source, guid, first)
    return Skipped(source, f"duplicate guid {guid}, first read from {first}")
