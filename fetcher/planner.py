"""Planning a run batch by batch, so that a big archive's cron run stays small.

A no-op run over an archive of 50,000 episodes must not hold an object per archived
episode. Sources are read in batches (:func:`fetcher.sources.stream_sources`: a
directory of documents a thousand at a time), each batch is planned against the manifest
rows of its own guids, and the episodes found up to date are counted, not kept, unless
the caller asks for them (``sync --json`` lists every episode). Documents read from the
cache that need work are read again in full and planned anew, batch by batch too.

Filters are the exception: ``latest = N`` ranks the episodes of a whole source, so when
any filter is active the sources are read whole and planned in one batch, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import cast

from fetcher.config import Config
from fetcher.filters import Filters, apply_filters
from fetcher.model import Episode, ItemRow, Settled
from fetcher.plan import (
    UP_TO_DATE_REASON,
    Action,
    Plan,
    Step,
    build_plan,
    settled_item,
)
from fetcher.sources import Entry, ReadOptions, SourceReport, read_sources, stream_sources
from fetcher.sources.doccache import settled_json
from fetcher.store import Store
from fetcher.store.layout import render_path
from fetcher.store.manifest import Manifest, Record


class PathOwners:
    """Which episode holds each archive path: paths given out in this run first, then
    the manifest's (asked one path at a time: only new episodes need to know).

    :meth:`overlay` gives paths out tentatively; :meth:`keep` makes them stick.
    """

    def __init__(self, manifest: Manifest, parent: PathOwners | None = None):
        self._manifest = manifest
        self._parent = parent
        self._given: dict[str, str] = {}
        #: The manifest's answers for the paths asked in one query (see :meth:`ask`).
        self._asked: dict[str, str | None] = {}

    def get(self, path: str) -> str | None:
        owner = self._given.get(path)
        if owner is not None:
            return owner
        if self._parent is not None:
            return self._parent.get(path)
        if path in self._asked:
            return self._asked[path]
        return self._manifest.owners_of([path]).get(path)

    def ask(self, paths: Iterable[str]) -> None:
        """Ask the manifest about *paths* at once (a batch's new episodes) instead of one
        query each when the plan gets to them."""
        if self._parent is not None:
            self._parent.ask(paths)
            return
        wanted = [p for p in paths if p not in self._asked]
        found = self._manifest.owners_of(wanted) if wanted else {}
        self._asked.update({p: found.get(p) for p in wanted})

    def __setitem__(self, path: str, guid: str) -> None:
        self._given[path] = guid

    def overlay(self) -> PathOwners:
        return PathOwners(self._manifest, self)

    def keep(self) -> None:
        """Pass this overlay's paths on to its parent."""
        if self._parent is not None:
            self._parent._given.update(self._given)


class StaleSidecars:
    """The records of verified downloads whose episode turns out to be archived already
    (a crash came after the manifest row, before the clean-up): removed as planning
    finds each episode up to date."""

    def __init__(self, archive: Store):
        self._directory = archive.partial_path("").parent
        self._archive = archive
        try:
            names = {p.name for p in self._directory.iterdir()}
        except OSError:
            names = set()
        self._orphans = {n for n in names if n.endswith(".part.json") and n[:-5] not in names}

    @property
    def pending(self) -> bool:
        return bool(self._orphans)

    def drop(self, guid: str) -> None:
        if not self._orphans:
            return
        name = self._archive.partial_path(guid).name + ".json"
        if name in self._orphans:
            (self._directory / name).unlink(missing_ok=True)
            self._orphans.discard(name)


async def plan_run(config: Config, archive: Store, manifest: Manifest,
                   names: Sequence[str | Path], options: ReadOptions, *, filters: Filters,
                   retry_failed: bool, keep_up_to_date: bool,
                   listed: Callable[[Step], None] | None = None
                   ) -> tuple[Plan, list[SourceReport]]:
    """The run's plan and how reading each source went; see the module docstring.
    Without *keep_up_to_date*, the plan counts up-to-date episodes instead of holding
    their steps, and gives each step to *listed* (if any) as it is found: a caller that
    lists every episode without holding them (read *options* without settling then)."""
    reports: list[SourceReport] = []
    owners = PathOwners(manifest)
    sidecars = StaleSidecars(archive)
    steps: list[Step] = []
    uncounted = 0
    filtering = filters.active or any(s.filters.active for s in config.sources.entries)
    batches = (_whole(names, options, reports, config, filters) if filtering
               else stream_sources(names, options, reports))
    async for batch in batches:
        # Orphaned records are rare (a crash): their episodes' steps are needed then.
        keep = keep_up_to_date or sidecars.pending
        plan, settling = await _plan_batch(config, batch, manifest, archive, owners,
                                           retry_failed, options, filters, filtering, keep,
                                           listed)
        if rows := settling.rows():
            await asyncio.to_thread(manifest.settle_documents, rows)
        if settling.items and options.states is not None:
            await asyncio.to_thread(options.states.settle_items, settling.items)
        uncounted += plan.up_to_date
        if sidecars.pending:
            for guid in (g for e in batch if isinstance(e, Settled) for g in e.guids):
                sidecars.drop(guid)
        for step in plan.steps:
            if step.action is Action.UP_TO_DATE and step.episode is not None:
                sidecars.drop(step.episode.guid)
                if not keep_up_to_date:
                    uncounted += 1
                    if listed is not None:
                        listed(step)
                    continue
            steps.append(step)
    return Plan(tuple(steps), uncounted), reports


async def _whole(names: Sequence[str | Path], options: ReadOptions,
                 reports: list[SourceReport], config: Config,
                 filters: Filters) -> AsyncIterator[Sequence[Entry | Settled]]:
    loaded = await read_sources(names, options)
    reports += loaded.sources
    yield apply_filters(loaded.entries, config.filters_for, filters)


async def _plan_batch(config: Config, entries: Sequence[Entry | Settled], manifest: Manifest,
                      archive: Store, owners: PathOwners, retry_failed: bool,
                      options: ReadOptions, filters: Filters, filtering: bool,
                      keep: bool, listed: Callable[[Step], None] | None) -> tuple[Plan, Settling]:
    """One batch's plan, and the documents it settles. Documents read from the cache
    that turn out to need work are read again in full (their light entries replaced
    where they stood) and the batch is planned anew."""
    tentative = owners.overlay()
    plan, settling = _build(config, entries, manifest, archive, tentative, retry_failed,
                            keep, listed)
    stale = {s.source for s in plan.steps if s.action is Action.REREAD and s.source}
    if not stale:
        tentative.keep()
        return plan, settling
    fresh = dataclasses.replace(options, documents=None, states=None)
    again = await read_sources(sorted(stale), fresh)
    by_source: dict[str, list[Entry]] = {}
    for fresh_entry in again.entries:
        by_source.setdefault(fresh_entry.source, []).append(fresh_entry)
    merged: list[Entry | Settled] = []
    for entry in entries:
        if entry.source in stale:
            merged += by_source.pop(entry.source, [])
        else:
            merged.append(entry)
    if filtering:  # read whole then, so never settled
        merged = [*apply_filters(cast(list[Entry], merged), config.filters_for, filters)]
    tentative = owners.overlay()
    plan, settling = _build(config, merged, manifest, archive, tentative, retry_failed, keep,
                            listed)
    tentative.keep()
    return plan, settling


def _new_paths(config: Config, entries: Sequence[Entry | Settled],
               records: Mapping[str, Record]) -> dict[str, str]:
    """The paths the template gives the episodes the manifest has not archived, by
    guid (one it cannot render is planned as invalid, where it is rendered again)."""
    paths = {}
    for entry in entries:
        if isinstance(entry, Episode):
            record = records.get(entry.guid)
            if record is None or record.path is None:
                with contextlib.suppress(ValueError, KeyError, IndexError):
                    paths[entry.guid] = str(render_path(config.template_for(entry), entry))
    return paths


def _build(config: Config, entries: Sequence[Entry | Settled], manifest: Manifest,
           archive: Store, owners: PathOwners, retry_failed: bool, keep: bool,
           listed: Callable[[Step], None] | None) -> tuple[Plan, Settling]:
    records = manifest.records_for([e.guid for e in entries if isinstance(e, Episode)])
    rendered = _new_paths(config, entries, records)
    owners.ask(rendered.values())
    settling = Settling(entries)
    counted = settling.counted
    if listed is not None:
        def counted(episode: Episode, record: Record) -> None:
            settling.counted(episode, record)
            listed(Step(Action.UP_TO_DATE, UP_TO_DATE_REASON, episode, episode.source,
                        PurePosixPath(record.path or ""), record))

    plan = build_plan(entries, records, archive, config.template_for, config.tags,
                      retry_failed=retry_failed, owners=owners, keep_up_to_date=keep,
                      on_counted=counted, rendered=rendered)
    return plan, settling


class Settling:
    """The documents of a batch that planning found wholly up to date, to be marked
    settled (see :mod:`fetcher.sources.doccache`): every entry an episode read from
    the cache, every one counted up to date, no transcript waiting for a retry. And
    the feed items whose episodes were counted up to date (see
    :mod:`fetcher.sources.feeditems`), in :attr:`items`."""

    def __init__(self, entries: Sequence[Entry | Settled]):
        self._wanted: dict[str, int] = {}
        self._spoilt: set[str] = set()
        for entry in entries:
            if isinstance(entry, Episode) and entry.digest is not None:
                self._wanted[entry.source] = self._wanted.get(entry.source, 0) + 1
            elif not isinstance(entry, Settled):
                self._spoilt.add(entry.source)
        self._found: dict[str, list[tuple[str, str, int]]] = {}
        self.items: list[ItemRow] = []

    def counted(self, episode: Episode, record: Record) -> None:
        if episode.item is not None:
            if (row := settled_item(episode, record)) is not None:
                self.items.append(row)
            return
        if episode.digest is None or record.path is None or record.file_bytes is None or (
                episode.transcripts and "failed_at" in record.files):
            self._spoilt.add(episode.source)
            return
        self._found.setdefault(episode.source, []).append(
            (episode.guid, record.path, record.file_bytes))

    def rows(self) -> list[tuple[str, str]]:
        """(settled JSON, document path) for each document settled."""
        return [(settled_json(files), source) for source, files in self._found.items()
                if source not in self._spoilt and len(files) == self._wanted.get(source)]
