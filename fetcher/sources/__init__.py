"""Sources turn what the user points at into episodes; they alone know formats.

A source is named by a string: a local path (a file or a directory) or an ``http(s)``
URL. Its format is chosen by its content (each format scores a sniffed head, see
:mod:`fetcher.sources.formats`), never its name: episode documents, RSS 2.0 and
Atom-wrapped podcast feeds, OPML lists of feeds. :func:`read_sources` reads them all
asynchronously and returns one :class:`Loaded` entry per episode, skip
or error; :func:`load_episodes` is the same for code that runs no event loop. The same
guid read twice yields one episode; the later copy is skipped with a reason naming the
first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from fetcher.aio import run_to_end
from fetcher.errors import SourceError, is_url
from fetcher.model import Entry, Episode, Settled, Skipped
from fetcher.settings import DownloadSettings, FeedSettings
from fetcher.sources import documents
from fetcher.sources.doccache import DocumentCache
from fetcher.sources.formats import HEAD_BYTES, choose_format, describe
from fetcher.sources.local import (
    DOCUMENT_SUFFIXES,
    Tally,
    iter_documents,
    local_files,
    read_files,
    read_local,
)
from fetcher.sources.reports import FeedStates, SourceReport
from fetcher.sources.unique import Unique

if TYPE_CHECKING:
    from fetcher.sources.feeds import FeedReader

log = logging.getLogger(__name__)

#: Documents read at a time when a directory is read in batches (:func:`stream_sources`).
BATCH = 1000


@dataclass(slots=True)
class Loaded:
    """Everything read from the sources, in reading order."""

    entries: list[Entry] = field(default_factory=list)
    #: How reading each source went.
    sources: list[SourceReport] = field(default_factory=list)

    @property
    def episodes(self) -> list[Episode]:
        return [e for e in self.entries if isinstance(e, Episode)]

    @property
    def skipped(self) -> list[Skipped]:
        return [e for e in self.entries if isinstance(e, Skipped)]

    @property
    def errors(self) -> list[SourceError]:
        return [e for e in self.entries if isinstance(e, SourceError)]


@dataclass(slots=True)
class ReadOptions:
    """How sources are read: the HTTP settings for feeds, what is remembered of them
    between runs (None: nothing, as in a dry run), per-source show slugs."""

    download: DownloadSettings = field(default_factory=DownloadSettings)
    feeds: FeedSettings = field(default_factory=FeedSettings)
    states: FeedStates | None = None
    fingerprint: Callable[[str], str] = lambda url: ""
    show_slugs: dict[str, str] = field(default_factory=dict)
    retry_gone: bool = False
    #: The document cache (see :mod:`fetcher.sources.doccache`), or None.
    documents: DocumentCache | None = None
    #: Settled documents may come back as :class:`Settled` (their episodes are then
    #: only counted: a run that does not list up-to-date episodes).
    settled: bool = False


class _Reading:
    """One run's reading: the HTTP client is made when the first feed needs it."""

    def __init__(self, options: ReadOptions, stack: contextlib.AsyncExitStack):
        self.options = options
        self._stack = stack
        self._reader: FeedReader | None = None
        self._lock = asyncio.Lock()

    async def feeds(self) -> FeedReader:
        async with self._lock:
            if self._reader is None:
                from fetcher.net.http import Http
                from fetcher.sources.feeds import FeedReader

                http = await self._stack.enter_async_context(Http(self.options.download))
                self._reader = FeedReader(http, self.options.feeds, self.options.states,
                                          self.options.fingerprint, self.options.show_slugs,
                                          self.options.retry_gone, self.options.settled)
            return self._reader

    async def read(self, name: str) -> tuple[Sequence[Entry | Settled], list[SourceReport]]:
        if is_url(name):
            return await (await self.feeds()).read(name)
        path = Path(name)
        if not await asyncio.to_thread(path.is_file):
            entries = await asyncio.to_thread(read_local, path, self.options.documents)
            return entries, [_documents_report(name, entries)]
        try:
            head = await asyncio.to_thread(_head, path)
        except OSError as exc:
            error = SourceError(path, f"cannot read: {exc.strerror or exc}")
            return [error], [SourceReport(name, "unknown", "error", error=error.reason)]
        kind = choose_format(head)
        if kind == "documents":
            entries = await asyncio.to_thread(read_local, path, self.options.documents)
            return entries, [_documents_report(name, entries)]
        if kind == "xml":
            return await self._read_xml_file(path, name)
        error = SourceError(path, f"not an episode document, a feed or an OPML list: "
                                  f"it is {describe(head)}")
        return [error], [SourceReport(name, "unknown", "error", error=error.reason)]

    async def batches(self, name: str) -> AsyncIterator[Sequence[Entry | Settled]]:
        """The entries of a local path, BATCH documents at a time."""
        try:
            files = await asyncio.to_thread(local_files, name)
            # The next batch is read while the consumer works on the one before.
            ahead = asyncio.ensure_future(asyncio.to_thread(self._batch, files))
            try:
                while (entries := await ahead) is not None:
                    ahead = asyncio.ensure_future(asyncio.to_thread(self._batch, files))
                    yield entries
            finally:
                ahead.cancel()
        except SourceError as exc:
            yield [exc]

    def _batch(self, files: Iterator[str]) -> list[Entry | Settled] | None:
        names = list(itertools.islice(files, BATCH))
        if not names:
            return None
        return read_files(names, self.options.documents, self.options.settled)

    async def _read_xml_file(self, path: Path,
                             name: str) -> tuple[Sequence[Entry | Settled], list[SourceReport]]:
        from fetcher.sources.feeds import forget_stale, open_ledger, read_body

        report = SourceReport(name, "feed")
        limit = self.options.feeds.max_feed_bytes
        states = self.options.states
        # A feed file is read every run: its settled items are left out, as a fetched
        # feed's are (see fetcher.sources.feeditems), unless every episode is listed.
        ledger = open_ledger(states, name)
        try:
            body = await asyncio.to_thread(_read_limited, path, limit)
            _, root, page = read_body(
                name, body, base_url="", trust="own", media=self.options.feeds.media,
                show_slug=self.options.show_slugs.get(name),
                fingerprint=self.options.fingerprint(name), ledger=ledger,
                cut=self.options.settled)
        except (OSError, SourceError) as exc:
            error = exc if isinstance(exc, SourceError) else SourceError(
                path, f"cannot read: {exc.strerror or exc}")
            report.status, report.error = "error", error.reason
            return [error], [report]
        if page is None:
            # Every feed the list names is a URL: read by the feed reader.
            assert root is not None
            entries, reports = await (await self.feeds()).read_opml_list(root, report)
            report.episodes = sum(isinstance(e, Episode) for e in entries)
            return entries, [report, *reports]
        if ledger is not None:
            forget_stale(states, name, ledger)
        for warning in page.warnings:
            log.warning("%s: %s", path, warning)
        report.episodes = len(page.settled) + sum(isinstance(e, Episode) for e in page.entries)
        settled = [Settled(name, tuple(page.settled))] if page.settled else []
        return [*settled, *page.entries], [report]


def _documents_report(name: str, entries: list[Entry]) -> SourceReport:
    tally = Tally(name)
    tally.add(entries)
    return tally.report()


def _head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(HEAD_BYTES)


def _read_limited(path: Path, limit: int) -> bytes:
    with path.open("rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"larger than the {limit}-byte limit")
    return data


async def read_sources(sources: Sequence[str | Path],
                       options: ReadOptions | None = None) -> Loaded:
    """Read every source, feeds concurrently; never raises for one bad source. Every
    entry comes back (nothing :class:`Settled`)."""
    options = dataclasses.replace(options, settled=False) if options else ReadOptions()
    async with contextlib.AsyncExitStack() as stack:
        reading = _Reading(options, stack)
        results = await asyncio.gather(*(reading.read(str(s)) for s in sources))
    loaded = _deduplicated([entries for entries, _ in results])
    loaded.sources = [report for _, reports in results for report in reports]
    return loaded


async def stream_sources(sources: Sequence[str | Path], options: ReadOptions,
                         reports: list[SourceReport]) -> AsyncIterator[Sequence[Entry | Settled]]:
    """:func:`read_sources` batch by batch, in the same order with the same skips of
    repeated guids. A directory of documents comes BATCH documents at a time, so that
    a run over a big archive never holds all its entries at once; other sources come
    whole (feeds are read concurrently). *reports* gets how each source went."""
    names = [str(s) for s in sources]
    folders = await asyncio.to_thread(lambda: [not is_url(n) and Path(n).is_dir()
                                               for n in names])
    unique = Unique()
    async with contextlib.AsyncExitStack() as stack:
        reading = _Reading(options, stack)
        whole: list[asyncio.Future[tuple[Sequence[Entry | Settled], list[SourceReport]]] | None]
        whole = [None if folder else asyncio.ensure_future(reading.read(name))
                 for name, folder in zip(names, folders, strict=True)]
        try:
            for name, task in zip(names, whole, strict=True):
                if task is not None:
                    entries, more = await task
                    reports += more
                    yield unique.entries(entries)
                    continue
                tally = Tally(name)
                async for batch in reading.batches(name):
                    tally.add(batch)
                    yield unique.entries(batch)
                reports.append(tally.report())
        finally:
            unique.close()
            for task in whole:
                if task is not None:
                    task.cancel()


def load_episodes(sources: Iterable[str | Path],
                  options: ReadOptions | None = None) -> Loaded:
    """:func:`read_sources` for callers that run no event loop."""
    return run_to_end(read_sources(list(sources), options))


def _deduplicated(results: Iterable[Sequence[Entry | Settled]]) -> Loaded:
    loaded = Loaded()
    unique = Unique()
    try:
        for entries in results:
            loaded.entries += cast(list[Entry], unique.entries(entries))  # nothing settled
    finally:
        unique.close()
    return loaded


__all__ = ["DOCUMENT_SUFFIXES", "Entry", "Loaded", "ReadOptions", "SourceReport",
           "documents", "iter_documents", "load_episodes", "read_local", "read_sources",
           "stream_sources"]
