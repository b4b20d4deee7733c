"""The end of an episode's way: tag, commit, side files, manifest row.

:class:`Finisher` holds what the pipeline does once the audio is on disk: MP3s are
tagged in the room left at the front of the partial file; other audio (M4A, Ogg,
Opus, FLAC) gets the tags mutagen supports for it and its chapters as a JSON sidecar;
then the file is committed under its final name, its transcripts are fetched beside
it, and the manifest row is written last.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from fetcher.audio import audio_kind, file_sha256
from fetcher.config import Config
from fetcher.duration import mapped, measure_duration_ms
from fetcher.errors import FetcherError, NotAudioError, redact_url, shown_source
from fetcher.events import EventSink, Outcome, Status
from fetcher.extras import Chapters, SideFile, fetch_transcripts
from fetcher.failpoints import failpoint
from fetcher.images import Images
from fetcher.journal import finish_journal
from fetcher.model import Episode, ItemRow
from fetcher.plan import Step, settled_item
from fetcher.safeio import fsync_file
from fetcher.staging import (
    Downloaded,
    discard_partial,
    drop_reserve,
    mark_verified,
    open_staged,
    sidecar_path,
    url_digest,
)
from fetcher.store import Store
from fetcher.store.local import now_iso
from fetcher.store.manifest import Manifest, Record
from fetcher.tagging.spec import final_chapters, tag_fingerprint

if TYPE_CHECKING:
    from fetcher.net.download import Downloader
    from fetcher.tagging.frames import OwnFrame
    from fetcher.tagging.writer import Tagged

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Ends the tag fingerprint of a tag made without its cover (see Finisher._tag_hash).
NO_COVER = "+no-cover"


async def uninterrupted(work: Coroutine[Any, Any, Outcome]) -> Outcome:
    """Run *work* to its end even when the run is interrupted meanwhile: a file half-way
    between partial and archive, or half re-tagged, must never be left behind."""
    finishing = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(finishing)
    except asyncio.CancelledError:
        return await finishing


class Finisher:
    def __init__(self, config: Config, archive: Store, manifest: Manifest,
                 on_event: EventSink,
                 settle_items: Callable[[list[ItemRow]], None] | None = None):
        self.config = config
        self.archive = archive
        self.manifest = manifest
        self.on_event = on_event
        #: Where the feed items archived as their feed says are remembered as settled.
        self._settle_items = settle_items
        self._downloader: Downloader | None = None
        self._images = Images(config.tags)
        self._chapters = Chapters(archive.journal_dir.parent / "chapters")
        self._hasher: Callable[[str], str] | None = None
        self._url_hashes: dict[str, str] = {}
        #: The names in the partial directory when the first download began.
        self._found: frozenset[str] | None = None
        self._finishing: ThreadPoolExecutor | None = None

    async def _blocking(self, work: Callable[..., T], /, *args: Any) -> T:
        """Run *work* on the finishing threads. They are as many as the cores (at most
        the jobs): each finishing call is a string of system calls, and more threads
        than cores would only pass the interpreter's lock back and forth at each one."""
        if self._finishing is None:
            workers = max(1, min(self.config.download.jobs, os.cpu_count() or 1))
            self._finishing = ThreadPoolExecutor(workers, thread_name_prefix="fetcher-finish")
        return await asyncio.get_running_loop().run_in_executor(
            self._finishing, functools.partial(work, *args))

    def close_finishing(self) -> None:
        """End the finishing threads (every call on them has returned)."""
        if self._finishing is not None:
            self._finishing.shutdown(wait=True)
            self._finishing = None

    async def _finish_download(
        self, step: Step, episode: Episode, downloaded: Downloaded,
        metadata: Sequence[OwnFrame] | None = None,
    ) -> Outcome:
        """Tag, commit and record a body that arrived whole. For an MP3 (nearly every
        episode) it all happens in one thread hand-off, on one open of the partial file,
        with one fsync of it: kind, verified marker, duration, tag, rename, manifest row
        (when no transcripts are to be fetched in between)."""
        assert step.path is not None
        cover, images = await self._images.for_episode(episode)
        record_now = not (episode.transcripts and self._downloader is not None)
        staged = await self._blocking(self._archive_mp3, step, episode, downloaded, cover,
                                      images, record_now, metadata)
        if staged.kind != "mp3":
            return await self._finish_other(step, episode, downloaded, staged.kind)
        assert staged.target is not None and staged.stat is not None
        files: list[SideFile] = []
        if not record_now:
            files = await self._side_files(step, episode, staged.target, "mp3")
            await self._blocking(
                self._save_and_forget, sidecar_path(downloaded.path), episode,
                self._archived_record(step, episode, downloaded, staged.stat,
                                      staged.duration, staged.tag_sha256, "mp3", files))
        log.debug("%s: archived as %s", episode.label, step.path)
        return Outcome(Status.DOWNLOADED, episode.source, episode, staged.target,
                       staged.stat.st_size, transcripts=_transcripts(files))

    def _archive_mp3(self, step: Step, episode: Episode, downloaded: Downloaded,
                     cover: bytes | None, images: dict[str, bytes],
                     record_now: bool, metadata: Sequence[OwnFrame] | None) -> _Staged:
        """The blocking part of :meth:`_finish_download`: returns the body's kind alone
        when it is not MP3; raises NotAudioError (the partial file discarded) when no
        MPEG frames are found."""
        assert step.path is not None
        partial = downloaded.path
        with open_staged(partial) as file:
            with mapped(file.fileno()) as data:  # read without a system call per read
                reserve = downloaded.reserve
                kind = audio_kind(bytes(data[reserve : reserve + 64])) or "mp3"
                if kind != "mp3":
                    return _Staged(kind)
                duration = measure_duration_ms(data)
            if duration is not None:
                # From here on the file's length changes as it is tagged: the marker
                # lets a run that stops before the commit finish from disk (staging).
                mark_verified(downloaded)
                failpoint("download-verified")
                tagged = self._write_tag(partial, episode, duration, cover, images,
                                         journal=False, file=file, metadata=metadata)
        if duration is None:
            discard_partial(partial)
            raise NotAudioError("no MPEG audio frames found in the body", episode=episode.label)
        failpoint("tagged")
        log.debug("%s: %d tag bytes", episode.label, tagged.tag_bytes)
        target, stat = self._commit(partial, step.path)
        if record_now:
            self._save_and_forget(
                sidecar_path(partial), episode,
                self._archived_record(step, episode, downloaded, stat, duration,
                                      tagged.tag_sha256, "mp3", []))
        return _Staged("mp3", target, stat, duration, tagged.tag_sha256)

    async def _finish_other(self, step: Step, episode: Episode, downloaded: Downloaded,
                            kind: str) -> Outcome:
        """Audio that is not MP3: tagged with mutagen, hashed whole, chapters beside it."""
        from fetcher.tagging.other import duration_ms, write_other_tags

        assert step.path is not None
        partial = downloaded.path
        cover, _ = await self._images.for_episode(episode)

        def tag_and_hash() -> tuple[int | None, str]:
            if downloaded.reserve:
                drop_reserve(partial, downloaded.reserve)
            duration = duration_ms(partial)
            write_other_tags(partial, episode, cover)
            digest = file_sha256(partial)
            fsync_file(partial)  # the one fsync of the file before it enters the archive
            return duration, digest

        try:
            duration, digest = await self._blocking(tag_and_hash)
        except FetcherError:
            discard_partial(partial)  # a file mutagen cannot read is not worth resuming
            raise
        whole = dataclasses.replace(downloaded, audio_sha256=digest)
        return await self._archive(step, episode, whole, duration, "", kind)

    async def _archive(self, step: Step, episode: Episode, downloaded: Downloaded,
                       duration: int | None, tag_digest: str, kind: str) -> Outcome:
        """Give a tagged partial file (fsynced) its final name, then fetch the files
        beside it, then write its manifest row, then forget its sidecar."""
        assert step.path is not None
        target, stat = await self._blocking(self._commit, downloaded.path, step.path)
        files = await self._side_files(step, episode, target, kind, duration)
        await self._blocking(
            self._save_and_forget, sidecar_path(downloaded.path), episode,
            self._archived_record(step, episode, downloaded, stat, duration, tag_digest,
                                  kind, files))
        log.debug("%s: archived as %s", episode.label, step.path)
        return Outcome(Status.DOWNLOADED, episode.source, episode, target, stat.st_size,
                       transcripts=_transcripts(files))

    def _commit(self, partial: Path, relative: PurePosixPath) -> tuple[Path, os.stat_result]:
        target = self.archive.commit(partial, relative)
        failpoint("renamed")
        return target, target.stat()

    async def _side_files(self, step: Step, episode: Episode, target: Path, kind: str,
                          duration: int | None = None) -> list[SideFile]:
        """Transcripts beside the audio, and for non-MP3 audio its chapters as JSON."""
        assert step.path is not None
        relative = PurePosixPath(step.path)
        files: list[SideFile] = []
        if episode.transcripts and self._downloader is not None:
            files += await fetch_transcripts(self._downloader, episode, target, relative,
                                             self._url_hash, self.archive.journal_dir)
        if kind != "mp3" and episode.chapters:
            from fetcher.extras import place_file
            from fetcher.tagging.other import chapters_json

            data = chapters_json(final_chapters(episode, duration), episode)
            name = f"{target.stem}.chapters.json"
            await self._blocking(place_file, data, target.with_name(name),
                                    self.archive.journal_dir)
            files.append(SideFile("chapters", str(relative.with_name(name)),
                                  hashlib.sha256(data).hexdigest(), len(data)))
        return files

    async def _record(self, step: Step, episode: Episode, downloaded: Downloaded,
                      target: Path, duration: int | None, tag_digest: str) -> os.stat_result:
        """Commit the manifest row of a file that now has its final name."""
        stat = await self._blocking(target.stat)
        # The commit (an fsync) runs in a thread: other downloads go on meanwhile.
        await self._blocking(self._save_and_forget, None, episode, self._archived_record(
            step, episode, downloaded, stat, duration, tag_digest, "mp3", []))
        return stat

    def _archived_record(self, step: Step, episode: Episode, downloaded: Downloaded,
                         stat: os.stat_result, duration: int | None, tag_digest: str,
                         kind: str, files: list[SideFile]) -> Record:
        """The manifest row of an episode archived at ``step.path`` (*stat*: its file's)."""
        now = now_iso()
        previous = step.record
        return Record(
            guid=episode.guid,
            show_slug=episode.show_slug,
            source=shown_source(episode.source),
            url=redact_url(episode.audio_url),
            url_hash=self._url_hash(episode.audio_url),
            path=str(step.path),
            expected_bytes=episode.expected_bytes,
            received_bytes=downloaded.size,
            file_bytes=stat.st_size,
            file_mtime_ns=stat.st_mtime_ns,
            audio_sha256=downloaded.audio_sha256,
            tag_sha256=tag_digest,
            etag=downloaded.etag,
            last_modified=downloaded.last_modified,
            tag_hash=self._tag_hash(episode),
            duration_ms=duration,
            size_discrepancy=downloaded.size_discrepancy,
            archived_at=(previous.archived_at if previous and previous.archived_at else now),
            updated_at=now,
            format=kind,
            files=_files_json(files),
            feed=redact_url(episode.feed_url) if episode.feed_url else None,
        )

    def _save_and_forget(self, forget: Path | None, episode: Episode, record: Record) -> None:
        self.manifest.save(record)
        failpoint("recorded")
        if forget is not None:
            forget.unlink(missing_ok=True)
        self._settle(episode, record)

    def _save_and_settle(self, episode: Episode, record: Record,
                         journal: Path | None = None) -> None:
        """Record a re-tag, then finish the *journal* of its tag write: a run that stops
        between the two has the journal removed at its next start, one that stops
        before the row has the old file put back (:mod:`fetcher.journal`)."""
        self.manifest.save(record)
        failpoint("recorded")
        if journal is not None:
            finish_journal(journal)
        self._settle(episode, record)

    def _settle(self, episode: Episode, record: Record) -> None:
        """Settle the feed item of an episode just archived (after its manifest row,
        whose write unsettles it): the next run counts it from its file's size, even
        when its feed answers 304. Not while the tag waits for its cover."""
        if self._settle_items is None or (record.tag_hash or "").endswith(NO_COVER):
            return
        if (row := settled_item(episode, record)) is not None:
            self._settle_items([row])

    async def _finish_retag(
        self, step: Step, episode: Episode, target: Path, duration: int | None
    ) -> Outcome:
        assert step.record is not None
        kind = step.record.format
        journal: Path | None = None
        if kind == "mp3":
            tagged = await self._tag(target, episode, duration, journal=True)
            digest, journal = tagged.tag_sha256, tagged.journal
            audio_digest = step.record.audio_sha256
        else:
            from fetcher.tagging.other import retag_archived

            cover, _ = await self._images.for_episode(episode)
            audio_digest, journal = await self._blocking(
                functools.partial(retag_archived, journal_dir=self.archive.journal_dir),
                target, episode, cover)
            digest = ""
        files = await self._side_files(step, episode, target, kind, duration)
        stat = await self._blocking(target.stat)
        record = dataclasses.replace(
            step.record,
            show_slug=episode.show_slug,
            source=shown_source(episode.source),
            url=step.record.url or redact_url(episode.audio_url),
            url_hash=step.record.url_hash or self._url_hash(episode.audio_url),
            expected_bytes=step.record.expected_bytes or episode.expected_bytes,
            file_bytes=stat.st_size,
            file_mtime_ns=stat.st_mtime_ns,
            audio_sha256=audio_digest,
            tag_sha256=digest,
            tag_hash=self._tag_hash(episode),
            duration_ms=duration,
            updated_at=now_iso(),
            last_error=None,
            last_error_at=None,
            files=_files_json(files),
            feed=redact_url(episode.feed_url) if episode.feed_url else step.record.feed,
        )
        await self._blocking(self._save_and_settle, episode, record, journal)
        return Outcome(Status.RETAGGED, episode.source, episode, target, stat.st_size,
                       transcripts=_transcripts(files))

    async def _tag(self, path: Path, episode: Episode, duration: int | None, *,
                   journal: bool) -> Tagged:
        cover, images = await self._images.for_episode(episode)
        return await self._blocking(functools.partial(self._write_tag, journal=journal),
                                    path, episode, duration, cover, images)

    def _write_tag(self, path: Path, episode: Episode, duration: int | None,
                   cover: bytes | None, images: dict[str, bytes], *, journal: bool,
                   file: BinaryIO | None = None,
                   metadata: Sequence[OwnFrame] | None = None) -> Tagged:
        """Write *episode*'s tag into *path* (blocking); *journal* for an archived file;
        *file*: *path* already open (see :func:`fetcher.tagging.writer.write_tags`)."""
        from fetcher.tagging.writer import write_tags

        return write_tags(path, episode, duration_ms=duration, settings=self.config.tags,
                          cover=cover, images=images,
                          journal_dir=self.archive.journal_dir if journal else None,
                          file=file, metadata=metadata)

    def _url_hash(self, url: str) -> str:
        """The keyed hash that stands for *url* in the manifest and the sidecars."""
        known = self._url_hashes.get(url)
        if known is None:
            hasher = self._hasher
            if hasher is None:
                hasher = self._hasher = self.archive.url_hasher() or url_digest
            known = self._url_hashes[url] = hasher(url)
        return known

    def _tag_hash(self, episode: Episode) -> str:
        """The fingerprint of what the tag holds; without its cover, one that the next
        run sees as changed, so that it tries the cover again."""
        fingerprint = tag_fingerprint(episode, self.config.tags)
        return fingerprint + NO_COVER if self._images.cover_missing(episode) else fingerprint


@dataclasses.dataclass(frozen=True, slots=True)
class _Staged:
    """What :meth:`Finisher._archive_mp3` did: the body's kind and, for an MP3, where it
    was archived, its file's stat, play time and tag hash."""

    kind: str
    target: Path | None = None
    stat: os.stat_result | None = None
    duration: int | None = None
    tag_sha256: str = ""


def _files_json(files: list[SideFile]) -> str:
    """The manifest's record of the files beside an episode's audio."""
    return json.dumps([f.as_json() for f in files])


def _transcripts(files: list[SideFile]) -> tuple[str, ...]:
    return tuple(f.path for f in files if f.kind == "transcript" and not f.failed_at)
