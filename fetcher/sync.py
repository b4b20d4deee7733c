"""Bringing an archive up to date: read the sources, plan, run the plan, report.

:func:`run` is the library's main entry point for code that already runs an event
loop; :func:`sync` runs it in a new loop. Both raise only for run-wide errors
(ArchiveError, ManifestError, ArchiveLockedError); each episode's fate is an
:class:`~fetcher.events.Outcome` in the returned :class:`SyncReport`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fetcher.aio import run_to_end
from fetcher.config import Config
from fetcher.errors import ArchiveError, ConfigError, is_url
from fetcher.events import EventSink, Outcome, PlanReady, Status, ignore
from fetcher.filters import NO_FILTERS, Filters, apply_filters
from fetcher.journal import recorded_in, recover_journals
from fetcher.model import FeedRecord, ItemRow, SettledItem
from fetcher.pipeline import Pipeline, static_outcome
from fetcher.plan import Action, Plan, Step, build_plan
from fetcher.planner import plan_run
from fetcher.sources import ReadOptions, SourceReport, read_sources
from fetcher.sources.doccache import DocumentCache
from fetcher.sources.reports import FeedStates
from fetcher.staging import url_digest
from fetcher.store import Archive, Store
from fetcher.store.manifest import Manifest
from fetcher.tagging.spec import tag_fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncReport:
    plan: Plan
    outcomes: tuple[Outcome, ...]
    interrupted: bool = False
    dry_run: bool = False
    #: How reading each source went (feeds: ok, not_modified, moved, gone, error).
    sources: tuple[SourceReport, ...] = ()
    #: Episodes up to date that have no outcome in *outcomes*, only this count (see
    #: ``keep_up_to_date``).
    up_to_date: int = 0

    def count(self, status: Status) -> int:
        counted = self.up_to_date if status is Status.UP_TO_DATE else 0
        return counted + sum(1 for o in self.outcomes if o.status is status)

    @property
    def ok(self) -> bool:
        """Nothing failed in this run (deferred episodes failed earlier) and it was not
        interrupted."""
        return not self.interrupted and self.count(Status.FAILED) == 0


def sync(
    config: Config,
    *,
    sources: Sequence[str | Path] | None = None,
    dry_run: bool = False,
    on_event: EventSink = ignore,
    handle_signals: bool = False,
    filters: Filters = NO_FILTERS,
    retry_failed: bool = False,
    keep_up_to_date: bool = True,
    on_up_to_date: Callable[[Outcome], None] | None = None,
) -> SyncReport:
    """:func:`run` in a new event loop (for callers that run none)."""
    return run_to_end(run(config, sources=sources, dry_run=dry_run, on_event=on_event,
                          handle_signals=handle_signals, filters=filters,
                          retry_failed=retry_failed, keep_up_to_date=keep_up_to_date,
                          on_up_to_date=on_up_to_date))


async def run(
    config: Config,
    *,
    sources: Sequence[str | Path] | None = None,
    dry_run: bool = False,
    on_event: EventSink = ignore,
    handle_signals: bool = False,
    filters: Filters = NO_FILTERS,
    retry_failed: bool = False,
    keep_up_to_date: bool = True,
    on_up_to_date: Callable[[Outcome], None] | None = None,
) -> SyncReport:
    """Bring the archive up to date with the sources; see the module docstring.

    With *handle_signals*, SIGINT and SIGTERM stop the run cleanly (the loop must be
    the main thread's). *filters* apply to every source, on top of each source's own;
    *retry_failed* tries episodes that failed for good now, not on their schedule.
    Without *keep_up_to_date*, episodes already up to date are counted
    (:attr:`SyncReport.up_to_date`) rather than each given an outcome: a cron run over
    a big archive then holds no object per archived episode. *on_up_to_date* is given
    each up-to-date episode's outcome as planning finds it, instead of the report (to
    list every episode without holding them: ``sync --json``).
    ConfigError when a local source does not exist (nothing is created then).
    """
    archive = Archive(config.archive.dir)
    names: list[str | Path] = list(sources) if sources else list(config.sources.names)
    for name in names:
        if not is_url(str(name)) and not await asyncio.to_thread(Path(name).exists):
            raise ConfigError(f"{name}: no such file or directory (named as a source)")
    if dry_run:
        return await _dry_run(config, archive, names, filters)
    if not archive.manifest_path.exists() and archive.holds_files():
        raise ArchiveError(
            f"{archive.root}: holds files but no manifest ({archive.manifest_path}); "
            "'fetcher verify --rebuild' adopts the archived files by their tags without "
            "downloading them (or point [archive] dir at an empty directory)"
        )
    await asyncio.to_thread(archive.prepare)
    with archive.lock(), Manifest.open(archive.manifest_path) as manifest:
        await asyncio.to_thread(recover_journals, archive.journal_dir,
                                check=archive.existing_target,
                                committed=recorded_in(manifest.get))
        keyed = archive.url_hasher()
        if keyed is not None and manifest.seal_urls(keyed):
            log.info("the manifest no longer holds full audio URLs (tokens redacted)")
        hasher = keyed or url_digest
        states = ArchiveFeedStates(manifest, hasher, str(archive.root))
        options = read_options(config, states)
        options.documents = document_cache(config, manifest, archive, hasher)
        listed = None
        if on_up_to_date is not None:
            keep_up_to_date = False
            listed = _lister(on_up_to_date, archive.root)
        # A listing run sees every episode; a counting one may count settled ones.
        options.settled = not keep_up_to_date and listed is None
        plan, reports = await plan_run(config, archive, manifest, names, options,
                                       filters=filters, retry_failed=retry_failed,
                                       keep_up_to_date=keep_up_to_date, listed=listed)
        options.documents = None  # its rows are not needed again: let them go
        on_event(plan_ready(plan))
        pipeline = Pipeline(config, archive, manifest, on_event,
                            settle_items=states.settle_items)
        outcomes, interrupted = await pipeline.run(plan, handle_signals)
        manifest.mark_feeds_incomplete(
            {hasher(o.episode.feed_url) for o in outcomes
             if o.status in (Status.FAILED, Status.INTERRUPTED)
             and o.episode and o.episode.feed_url}
        )
    report = SyncReport(plan, tuple(outcomes), interrupted, sources=tuple(reports),
                        up_to_date=plan.up_to_date)
    if config.hooks.after_run:
        from fetcher.hooks import run_after_run

        await run_after_run(config.hooks, report)
    return report


def _lister(on_up_to_date: Callable[[Outcome], None], root: Path) -> Callable[[Step], None]:
    """What the planner calls with each up-to-date step: its outcome to *on_up_to_date*."""
    def listed(step: Step) -> None:
        on_up_to_date(static_outcome(step, root))

    return listed


def document_cache(config: Config, manifest: Manifest, archive: Archive,
                   hasher: Callable[[str], str]) -> DocumentCache:
    """The document cache of a run: rows read from *manifest* batch by batch, new rows
    saved there after each batch, settled files looked for under *archive*."""
    settings_key = hashlib.sha256(repr(config.tags).encode()).hexdigest()[:16]
    return DocumentCache({}, settings_key, lambda e: tag_fingerprint(e, config.tags),
                         hasher, fetch=manifest.cached_documents_for,
                         root=str(archive.root), save=manifest.save_documents)


def plan_ready(plan: Plan) -> PlanReady:
    """The totals of a plan's downloads: episodes, bytes still to fetch, unknown sizes."""
    downloads = [s for s in plan.steps if s.action is Action.DOWNLOAD and s.episode]
    known = [s for s in downloads if s.episode and s.episode.expected_bytes]
    total = sum(max((s.episode.expected_bytes or 0) - s.resume_from, 0)
                for s in known if s.episode)
    return PlanReady(len(downloads), total, len(downloads) - len(known))


class ArchiveFeedStates:
    """What the archive remembers of each feed, stored under a keyed hash of its URL
    (a private feed's token never reaches the manifest)."""

    def __init__(self, manifest: Manifest, hasher: Callable[[str], str], root: str):
        self.manifest = manifest
        self.hasher = hasher
        self.root = root

    def get_feed(self, url: str) -> FeedRecord | None:
        record = self.manifest.get_feed(self.hasher(url))
        return dataclasses.replace(record, url=url) if record is not None else None

    def save_feed(self, record: FeedRecord) -> None:
        self.manifest.save_feed(self.hasher(record.url), record)

    def settled_items(self, url: str) -> tuple[dict[str, SettledItem], str]:
        return self.manifest.feed_items(self.hasher(url)), self.root

    def forget_items(self, url: str, items: list[str]) -> None:
        self.manifest.forget_feed_items(self.hasher(url), items)

    def settle_items(self, rows: Iterable[ItemRow]) -> None:
        """Remember feed items found up to date: (feed URL, item key, guid, archived
        path, size) each."""
        self.manifest.settle_feed_items(
            [(self.hasher(url), key.item, key.context, guid, path, size)
             for url, key, guid, path, size in rows])


def read_options(config: Config, states: FeedStates | None) -> ReadOptions:
    """How a run reads its sources under *config* (*states*: what is remembered of feeds
    between runs; None reads every feed in full and remembers nothing)."""
    tag_settings = repr(config.tags) + repr(config.feeds)

    def fingerprint(url: str) -> str:
        entry = config.sources.for_source(url)
        text = tag_settings + repr(entry) + config.template_for_url(url)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    slugs = {e.name: e.show for e in config.sources.entries if e.show}
    return ReadOptions(download=config.download, feeds=config.feeds, states=states,
                       fingerprint=fingerprint, show_slugs=slugs)


async def _dry_run(config: Config, archive: Store, names: list[str | Path],
                   filters: Filters) -> SyncReport:
    manifest = Manifest.open_readonly(archive.manifest_path)
    try:
        records = manifest.records() if manifest is not None else {}
    finally:
        if manifest is not None:
            manifest.close()
    loaded = await read_sources(names, read_options(config, None))
    entries = apply_filters(loaded.entries, config.filters_for, filters)
    plan = build_plan(entries, records, archive, config.template_for, config.tags)
    return SyncReport(plan, tuple(static_outcome(step, archive.root) for step in plan.steps
                                  if step.action not in (Action.DOWNLOAD, Action.RETAG)),
                      dry_run=True, sources=tuple(loaded.sources))
