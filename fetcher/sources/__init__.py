"""Sources turn what the user points at into episodes; they alone know formats.

A source is named by a string: a local path (a file or a directory) or an ``http(s)``
URL, read by the module of its format (today: episode documents). :func:`read_sources`
reads them all asynchronously and returns one :class:`Loaded` entry per episode, skip
or error; :func:`load_episodes` is the same for code that runs no event loop. The same
guid read twice yields one episode; the later copy is skipped with a reason naming the
first.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fetcher.errors import SourceError
from fetcher.model import Episode, Skipped
from fetcher.sources import documents

log = logging.getLogger(__name__)

#: File endings read when a directory is walked (named files are read whatever
#: their name).
DOCUMENT_SUFFIXES = frozenset({".md", ".markdown", ".json"})

Entry = Episode | Skipped | SourceError


@dataclass(slots=True)
class Loaded:
    """Everything read from the sources, in reading order."""

    entries: list[Entry] = field(default_factory=list)

    @property
    def episodes(self) -> list[Episode]:
        return [e for e in self.entries if isinstance(e, Episode)]

    @property
    def skipped(self) -> list[Skipped]:
        return [e for e in self.entries if isinstance(e, Skipped)]

    @property
    def errors(self) -> list[SourceError]:
        return [e for e in self.entries if isinstance(e, SourceError)]


def iter_documents(paths: Iterable[Path]) -> Iterator[Path]:
    """Yield document files: given files as they are, directories walked in name order.

    Hidden files and directories (a leading dot) are passed over inside directories.
    """
    for path in paths:
        if path.is_dir():
            yield from _walk(path)
        elif path.exists():
            yield path
        else:
            raise SourceError(path, "no such file or directory")


def _walk(directory: Path) -> Iterator[Path]:
    # scandir's entries know their type from the directory itself: no stat per file,
    # which is most of a no-op run's cost over thousands of documents.
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except OSError as exc:
        raise SourceError(directory, f"cannot list: {exc.strerror or exc}") from exc
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path))
        elif entry.is_file() and _suffix(entry.name) in DOCUMENT_SUFFIXES:
            yield Path(entry.path)


def _suffix(name: str) -> str:
    stem, dot, ending = name.rpartition(".")
    return f".{ending.lower()}" if dot and stem else ""


def read_local(source: str | Path) -> list[Entry]:
    """Every entry of one local source (file or directory); never raises."""
    path = Path(source)
    entries: list[Entry] = []
    try:
        if path.is_dir():
            files = list(_walk(path))
        elif path.exists():
            files = [path]
        else:
            raise SourceError(path, "no such file or directory")
    except SourceError as exc:
        return [exc]
    for document in files:
        try:
            entries.extend(documents.read_document(document))
        except SourceError as exc:
            entries.append(exc)
    return entries


async def read_sources(sources: Sequence[str | Path]) -> Loaded:
    """Read every source (blocking file work in threads); never raises for one bad one."""
    results = [await asyncio.to_thread(read_local, source) for source in sources]
    return _deduplicated(results)


def load_episodes(sources: Iterable[str | Path]) -> Loaded:
    """:func:`read_sources` for callers without an event loop."""
    return _deduplicated([read_local(source) for source in sources])


def _deduplicated(results: Iterable[list[Entry]]) -> Loaded:
    loaded = Loaded()
    seen: dict[str, str] = {}
    for entries in results:
        for entry in entries:
            if isinstance(entry, Episode):
                first = seen.get(entry.guid)
                if first is not None:
                    log.warning("%s: guid %s was already read from %s; this copy is ignored",
                                entry.source, entry.guid, first)
                    entry = Skipped(entry.source,
                                    f"duplicate guid {entry.guid}, first read from {first}")
                else:
                    seen[entry.guid] = entry.source
            loaded.entries.append(entry)
    return loaded


__all__ = ["Entry", "Loaded", "iter_documents", "load_episodes", "read_sources"]
