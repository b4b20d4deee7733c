"""Deciding what each episode needs, from the documents and the manifest alone.

:func:`build_plan` is pure apart from ``stat``: it compares every episode with its
record and the archived file's size, and never reads file contents, so a run where
nothing changed costs one stat per episode.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Protocol

from fetcher.errors import SourceError, redact_url
from fetcher.extras import missing_transcripts
from fetcher.model import Episode, ItemRow, Settled, Skipped
from fetcher.settings import TagSettings
from fetcher.store import Store
from fetcher.store.layout import render_path, with_suffix_for
from fetcher.store.manifest import Record
from fetcher.tagging.spec import tag_fingerprint


class Action(enum.Enum):
    DOWNLOAD = "download"
    RETAG = "retag"
    UP_TO_DATE = "up_to_date"
    SKIP = "skip"
    #: Failed for good earlier; its next try is not due yet.
    DEFER = "defer"
    #: A document read from the cache needs work: read it in full, then plan again.
    REREAD = "reread"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Step:
    """What to do for one document entry, and why."""

    action: Action
    reason: str
    episode: Episode | None = None
    source: str | None = None
    path: PurePosixPath | None = None
    record: Record | None = None
    resume_from: int = 0
    #: The archived file's size is not the recorded one, but its audio may be: a tag
    #: rewrite killed before the manifest learnt the new size. Hash before downloading.
    check_audio: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[Step, ...]
    #: Episodes found up to date whose steps were counted, not kept (a big archive's
    #: run holds no object per archived episode; see :mod:`fetcher.planner`).
    up_to_date: int = 0

    def count(self, action: Action) -> int:
        counted = self.up_to_date if action is Action.UP_TO_DATE else 0
        return counted + sum(1 for step in self.steps if step.action is action)

    @property
    def work(self) -> list[Step]:
        return [s for s in self.steps if s.action in (Action.DOWNLOAD, Action.RETAG)]


UP_TO_DATE_REASON = "archived and verified by size"
#: What :func:`_decide` returns for an up-to-date episode that is only counted.
COUNTED = Step(Action.UP_TO_DATE, UP_TO_DATE_REASON)

#: Told of each up-to-date episode that is only counted, with its record.
Counted = Callable[[Episode, Record], None]
def settled_item(episode: Episode, record: Record) -> ItemRow | None:
    """The row that settles *episode*'s feed item (see :mod:`fetcher.sources.feeditems`)
    once *record* holds it up to date; None when it is not read from a feed item, or
    must be looked at again (a transcript waits for a retry)."""
    if (episode.item is None or record.path is None or record.file_bytes is None
            or (episode.transcripts and "failed_at" in record.files)):
        return None
    return (episode.source, episode.item, episode.guid, record.path, record.file_bytes)
StatFn = Callable[[Path | str], os.stat_result | None]


class PathOwners(Protocol):
    """Which episode (guid) holds each archive-relative path; new episodes add theirs."""

    def get(self, path: str, /) -> str | None: ...

    def __setitem__(self, path: str, guid: str, /) -> None: ...


def stat_or_none(path: Path | str) -> os.stat_result | None:
    try:
        return os.stat(path)  # noqa: PTH116 - a str path: no Path object per episode
    except OSError:
        return None


def build_plan(
    entries: Iterable[Episode | Skipped | SourceError | Settled],
    records: Mapping[str, Record],
    archive: Store,
    template: str | Callable[[Episode], str],
    tag_settings: TagSettings,
    *,
    stat: StatFn = stat_or_none,
    retry_failed: bool = False,
    now: datetime | None = None,
    owners: PathOwners | None = None,
    keep_up_to_date: bool = True,
    on_counted: Counted | None = None,
    rendered: Mapping[str, str] | None = None,
) -> Plan:
    """What each entry needs; *template* names files (or chooses a template per episode).

    A download that failed for good (see :func:`fetcher.errors.is_permanent`) is
    deferred until its next try is due, unless *retry_failed* or its URL changed.
    *owners* knows which paths are taken (default: those of *records*). Without
    *keep_up_to_date*, up-to-date episodes are counted (:attr:`Plan.up_to_date`), their
    steps not made, and *on_counted* told of each (with its record);
    :class:`~fetcher.model.Settled` documents are always counted. *rendered* holds the
    paths the template gave new episodes already (by guid), not to render them twice.
    """
    entries = list(entries)
    moment = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    url_hash = archive.url_hasher()
    taken: PathOwners = owners if owners is not None else {
        r.path: r.guid for r in records.values() if r.path is not None}
    steps: list[Step] = []
    counted = 0
    for entry in entries:
        if isinstance(entry, Settled):
            counted += len(entry.guids)
        elif isinstance(entry, Skipped):
            steps.append(Step(Action.SKIP, entry.reason, entry.episode, source=entry.source))
        elif isinstance(entry, SourceError):
            steps.append(Step(Action.INVALID, str(entry), source=entry.source))
        else:
            record = records.get(entry.guid)
            step = _decide(entry, record, archive, template, tag_settings, taken, stat,
                           url_hash, keep_up_to_date, on_counted, rendered or {})
            if step is COUNTED:
                counted += 1
                continue
            if entry.digest is not None and step.action is not Action.UP_TO_DATE:
                step = Step(Action.REREAD, "changed since it was cached", entry,
                            entry.source)
            if (step.action is Action.DOWNLOAD and record is not None and record.next_try
                    and not retry_failed and _utc(record.next_try) > moment
                    and not _url_changed(record, entry.audio_url, url_hash)):
                step = replace(step, action=Action.DEFER, reason=(
                    f"failed {record.failures} time(s) for good ({record.last_error}); "
                    f"next try {record.next_try} (--retry-failed tries now)"))
            steps.append(step)
    return Plan(tuple(steps), counted)


def _utc(text: str) -> str:
    try:
        return datetime.fromisoformat(text).astimezone(UTC).isoformat(timespec="seconds")
    except ValueError:
        return ""


def _assign_path(episode: Episode, template: str | Callable[[Episode], str],
                 taken: PathOwners, rendered: Mapping[str, str]) -> PurePosixPath:
    known = rendered.get(episode.guid)
    path = PurePosixPath(known) if known is not None else render_path(
        template if isinstance(template, str) else template(episode), episode)
    owner = taken.get(str(path))
    if owner is not None and owner != episode.guid:
        path = with_suffix_for(path, episode.guid)
    taken[str(path)] = episode.guid
    return path


def _url_changed(record: Record, url: str, url_hash: Callable[[str], str] | None,
                 known_hash: str | None = None) -> bool:
    if record.url_hash and known_hash is not None:
        return record.url_hash != known_hash
    if record.url_hash and url_hash is not None:
        return record.url_hash != url_hash(url)
    if not record.url:
        return False
    # An older manifest row, or no key yet: the stored URL may be whole or redacted.
    return record.url not in (url, redact_url(url))


def _decide(
    episode: Episode,
    record: Record | None,
    archive: Store,
    template: str | Callable[[Episode], str],
    tag_settings: TagSettings,
    taken: PathOwners,
    stat: StatFn,
    url_hash: Callable[[str], str] | None,
    keep: bool,
    on_counted: Counted | None,
    rendered: Mapping[str, str],
) -> Step:
    def download(reason: str, path: PurePosixPath) -> Step:
        partial = stat(archive.partial_path(episode.guid))
        resume = partial.st_size if partial is not None else 0
        if resume:
            reason += f"; resume from {resume} bytes"
        return Step(Action.DOWNLOAD, reason, episode, episode.source, path, record, resume)

    if record is None or record.path is None:
        try:
            path = _assign_path(episode, template, taken, rendered)
        except (ValueError, KeyError, IndexError) as exc:
            return Step(Action.INVALID, f"{episode.source}: filename template: {exc}",
                        episode, episode.source)
        return download("new episode", path)

    # The path is parsed only for a step that is kept (a no-op run counts its steps).
    text = record.path
    # A rebuilt manifest knows neither URL nor size: the file is adopted as it is.
    known = episode.digest.url_hash if episode.digest is not None else None
    if _url_changed(record, episode.audio_url, url_hash, known):
        return download("audio URL changed", PurePosixPath(text))
    if (
        episode.expected_bytes is not None
        and record.expected_bytes is not None
        and record.expected_bytes != episode.expected_bytes
    ):
        return download(f"size changed ({record.expected_bytes} -> "
                        f"{episode.expected_bytes} bytes)", PurePosixPath(text))
    try:
        current = stat(archive.absolute_text(text))
    except Exception as exc:  # noqa: BLE001 - a hostile path in a damaged manifest
        return Step(Action.INVALID, f"{episode.source}: archived path refused: {exc}",
                    episode, episode.source)
    if current is None:
        return download("archived file is missing", PurePosixPath(text))
    if current.st_size != record.file_bytes:
        step = download(f"archived file is {current.st_size} bytes, expected "
                        f"{record.file_bytes}", PurePosixPath(text))
        if record.audio_sha256:
            step = replace(step, check_audio=True)
        return step
    if record.tag_hash != tag_fingerprint(episode, tag_settings):
        return Step(Action.RETAG, "metadata changed", episode, episode.source,
                    PurePosixPath(text), record)
    if episode.transcripts and missing_transcripts(record.files, PurePosixPath(text),
                                                   episode, url_hash):
        return Step(Action.RETAG, "transcripts missing", episode, episode.source,
                    PurePosixPath(text), record)
    if not keep:
        if on_counted is not None:
            on_counted(episode, record)
        return COUNTED
    return Step(Action.UP_TO_DATE, UP_TO_DATE_REASON, episode, episode.source,
                PurePosixPath(text), record)
