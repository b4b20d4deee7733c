"""Local episode documents: walking directories for them and reading them, with the
document cache (:mod:`fetcher.sources.doccache`) when there is one."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from fetcher.errors import SourceError
from fetcher.model import Entry, Episode, Settled, Skipped, cleaned
from fetcher.sources import documents
from fetcher.sources.doccache import DocumentCache
from fetcher.sources.reports import SourceReport

#: File endings read when a directory is walked (named files are read whatever
#: their name).
DOCUMENT_SUFFIXES = frozenset({".md", ".markdown", ".json"})


def iter_documents(paths: Iterable[Path]) -> Iterator[Path]:
    """Yield document files: given files as they are, directories walked in name order.

    Hidden files and directories (a leading dot) are passed over inside directories.
    """
    for path in paths:
        yield from map(Path, local_files(path))


def _walk(directory: Path | str) -> Iterator[str]:
    """The document files under *directory*, as text paths in name order.

    scandir's entries know their type from the directory itself (no stat per file),
    and paths stay text (no Path object per file): over thousands of documents, both
    were most of a no-op run's cost.
    """
    # Names only, not scandir's entries (a directory of 50,000 documents would hold
    # 10 MB of them while it is walked).
    names: list[str] = []
    folders: set[str] = set()
    try:
        with os.scandir(directory) as scan:
            for entry in scan:
                name = entry.name
                if name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    folders.add(name)
                    names.append(name)
                elif entry.is_file() and _suffix(name) in DOCUMENT_SUFFIXES:
                    names.append(name)
    except OSError as exc:
        raise SourceError(Path(directory), f"cannot list: {exc.strerror or exc}") from exc
    names.sort()
    # Paths spelt as str(Path(...)) would spell them (entries are keyed by that text).
    spelt = str(Path(directory))
    prefix = "" if spelt == "." else spelt.rstrip("/") + "/"
    for name in names:
        child = prefix + name
        if name in folders:
            yield from _walk(child)
        else:
            yield child


def _suffix(name: str) -> str:
    stem, dot, ending = name.rpartition(".")
    return f".{ending.lower()}" if dot and stem else ""


def read_local(source: str | Path, cache: DocumentCache | None = None) -> list[Entry]:
    """Every entry of one local path of episode documents; never raises. With *cache*,
    a document whose size and mtime are those cached is not parsed."""
    try:
        files = list(local_files(source))
    except SourceError as exc:
        return [exc]
    return cast(list[Entry], read_files(files, cache))  # not settled: entries only


def local_files(source: str | Path) -> Iterator[str]:
    """The document files of one local path: itself, or a directory's walked in name
    order. SourceError when it does not exist (or cannot be listed)."""
    path = Path(source)
    if path.is_dir():
        return _walk(path)
    if path.exists():
        return iter([str(path)])
    raise SourceError(path, "no such file or directory")


def read_files(names: list[str], cache: DocumentCache | None = None,
               settled: bool = False) -> list[Entry | Settled]:
    """Every entry of the document files *names* (see :func:`read_local`); with
    *settled*, a settled document is one :class:`Settled` instead of its entries."""
    entries: list[Entry | Settled] = []
    if cache is not None:
        cache.load(names)
    for name in names:
        if cache is not None:
            try:
                info = os.stat(name)  # noqa: PTH116 - a text path: no Path per document
            except OSError:
                info = None
            if info is not None:
                cached = cache.get(name, info.st_size, info.st_mtime_ns, settled)
                if isinstance(cached, Settled):
                    entries.append(cached)
                    continue
                if cached is not None:
                    entries += cached
                    continue
        try:
            read = documents.read_document(Path(name))
        except SourceError as exc:
            entries.append(exc)
            continue
        if cache is not None and info is not None:
            cache.put(name, info.st_size, info.st_mtime_ns, _cleaned_all(read))
        entries.extend(read)
    if cache is not None:
        cache.flush()
    return entries


def _cleaned_all(entries: list[Episode | Skipped]) -> list[Entry]:
    return [cleaned(e)[0] if isinstance(e, Episode) else e for e in entries]


@dataclass(slots=True)
class Tally:
    """How reading one local source went, counted batch by batch."""

    name: str
    entries: int = 0
    episodes: int = 0
    errors: int = 0
    first_error: SourceError | None = None

    def add(self, entries: Sequence[Entry | Settled]) -> None:
        self.entries += len(entries)
        for entry in entries:
            if isinstance(entry, Episode):
                self.episodes += 1
            elif isinstance(entry, Settled):
                self.episodes += len(entry.guids)
            elif isinstance(entry, SourceError):
                self.errors += 1
                self.first_error = self.first_error or entry

    def report(self) -> SourceReport:
        lost = self.errors == self.entries and self.first_error is not None
        return SourceReport(self.name, "documents", "error" if lost else "ok",
                            episodes=self.episodes,
                            error=str(self.first_error) if lost else None)
