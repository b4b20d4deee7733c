"""One episode's way into the archive: download -> verify -> tag -> commit -> record.

:class:`Pipeline` runs a plan's steps concurrently under the downloader's limits;
blocking work (hashing, tagging, renames) runs in threads; an episode's failure
becomes its :class:`~fetcher.events.Outcome` and never stops the others. On
SIGINT/SIGTERM (when asked to handle them) no new work starts, downloads in flight
stop with their partial files kept for the next run, and episodes already being
committed finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fetcher.audio import measure_duration_ms, payload_sha256, tag_sha256
from fetcher.config import Config
from fetcher.errors import FetcherError, NotAudioError, redact_url
from fetcher.events import EpisodeDone, EventSink, Outcome, Status
from fetcher.failpoints import failpoint
from fetcher.images import Images
from fetcher.model import Episode
from fetcher.plan import Action, Plan, Step
from fetcher.staging import (
    Downloaded,
    discard_partial,
    mark_verified,
    sidecar_path,
    url_digest,
    verified_download,
)
from fetcher.store import Store
from fetcher.store.local import now_iso
from fetcher.store.manifest import Manifest, Record
from fetcher.tagging.spec import tag_fingerprint

if TYPE_CHECKING:
    # The download and tag stages (httpx, tenacity, mutagen) are imported only when
    # there is work, so that a cron run with nothing to do starts fast.
    from fetcher.net.download import Downloader
    from fetcher.tagging.writer import Tagged

log = logging.getLogger(__name__)


async def _uninterrupted(work: Coroutine[Any, Any, Outcome]) -> Outcome:
    """Run *work* to its end even when the run is interrupted meanwhile: a file half-way
    between partial and archive, or half re-tagged, must never be left behind."""
    finishing = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(finishing)
    except asyncio.CancelledError:
        return await finishing


def static_outcome(step: Step) -> Outcome:
    """The outcome of a step that needs no work."""
    if step.action is Action.UP_TO_DATE:
        assert step.record is not None
        return Outcome(Status.UP_TO_DATE, step.source, step.episode, None,
                       step.record.file_bytes, reason=step.reason)
    if step.action is Action.SKIP:
        return Outcome(Status.SKIPPED, step.source, step.episode, reason=step.reason)
    return Outcome(Status.FAILED, step.source, step.episode, error=step.reason)


class Pipeline:
    def __init__(self, config: Config, archive: Store, manifest: Manifest,
                 on_event: EventSink):
        self.config = config
        self.archive = archive
        self.manifest = manifest
        self.on_event = on_event
        self._downloader: Downloader | None = None
        self._images = Images(config.tags)
        self._hasher: Callable[[str], str] | None = None

    async def run(self, plan: Plan, handle_signals: bool) -> tuple[list[Outcome], bool]:
        outcomes: dict[int, Outcome] = {}
        for index, step in enumerate(plan.steps):
            if step.action not in (Action.DOWNLOAD, Action.RETAG):
                outcome = static_outcome(step)
                outcomes[index] = outcome
                if step.action is Action.INVALID and step.episode is not None:
                    self._remember_failure(step.episode, step.reason)
        work = [(i, s) for i, s in enumerate(plan.steps) if i not in outcomes]
        self._drop_stale_sidecars(plan)
        interrupted = False
        if work:
            from fetcher.net.download import Downloader

            async with Downloader(self.config.download, on_event=self.on_event) as downloader:
                self._downloader = downloader
                self._images.http = downloader
                tasks = {i: asyncio.create_task(self._run_step(step)) for i, step in work}
                stop = self._install_signals(tasks.values()) if handle_signals else None
                try:
                    results = await asyncio.gather(*tasks.values(), return_exceptions=True)
                finally:
                    if stop is not None:
                        self._remove_signals()
                interrupted = bool(stop and stop.is_set())
                for (index, step), result in zip(work, results, strict=True):
                    if isinstance(result, Outcome):
                        outcomes[index] = result
                    elif isinstance(result, asyncio.CancelledError):
                        outcomes[index] = Outcome(Status.FAILED, step.source, step.episode,
                                                  error="interrupted; will resume next run")
                    else:
                        raise result
        return [outcomes[i] for i in sorted(outcomes)], interrupted

    def _drop_stale_sidecars(self, plan: Plan) -> None:
        """Remove the records of verified downloads whose episode is archived already
        (a crash came after the manifest row, before the clean-up)."""
        directory = self.archive.partial_path("").parent
        try:
            names = {p.name for p in directory.iterdir()}
        except OSError:
            return
        orphans = {n for n in names if n.endswith(".part.json") and n[:-5] not in names}
        if not orphans:
            return
        for step in plan.steps:
            if step.action is Action.UP_TO_DATE and step.episode is not None:
                sidecar = self.archive.partial_path(step.episode.guid).name + ".json"
                if sidecar in orphans:
                    (directory / sidecar).unlink(missing_ok=True)

    def _install_signals(self, tasks: Iterable[asyncio.Task[Outcome]]) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        pending = list(tasks)

        def on_signal(signum: int) -> None:
            if stop.is_set():
                return
            log.warning("%s received: stopping; partial downloads are kept for the next run",
                        signal.Signals(signum).name)
            stop.set()
            for task in pending:
                task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        return stop

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)

    async def _run_step(self, step: Step) -> Outcome:
        episode = step.episode
        assert episode is not None and step.path is not None
        try:
            if step.action is Action.DOWNLOAD:
                outcome = await self._download(step, episode)
            else:
                outcome = await self._retag(step, episode)
        except FetcherError as error:
            self._remember_failure(episode, str(error))
            outcome = Outcome(Status.FAILED, episode.source, episode, error=str(error))
        except OSError as error:
            message = f"{episode.label}: {error.strerror or error}"
            if error.filename:
                message += f" ({error.filename})"
            self._remember_failure(episode, message)
            outcome = Outcome(Status.FAILED, episode.source, episode, error=message)
        self.on_event(EpisodeDone(episode.label, outcome))
        return outcome

    # --- a new or changed episode -----------------------------------------------------

    async def _download(self, step: Step, episode: Episode) -> Outcome:
        assert self._downloader is not None and step.path is not None
        from fetcher.net.download import DownloadRequest
        from fetcher.tagging.frames import reserve_for

        adopted = await self._adopt(step, episode)
        if adopted is not None:
            return adopted
        if step.check_audio:
            recognised = await self._recognise(step, episode)
            if recognised is not None:
                return recognised
        partial = self.archive.partial_path(episode.guid)
        # The tag is sized before the download so that it can be written into room left
        # at the front of the partial file: the audio is written once, never copied.
        cover, images = await self._images.for_episode(episode)
        reserve = await asyncio.to_thread(
            reserve_for, episode, self.config.tags, cover, images
        )
        downloaded = await self._downloader.fetch(
            DownloadRequest(episode.label, episode.audio_url, partial, episode.expected_bytes,
                            reserve=reserve, url_id=self._url_hash(episode.audio_url))
        )
        return await _uninterrupted(self._finish_download(step, episode, downloaded))

    async def _finish_download(
        self, step: Step, episode: Episode, downloaded: Downloaded
    ) -> Outcome:
        assert step.path is not None
        partial = downloaded.path
        await asyncio.to_thread(mark_verified, downloaded)
        failpoint("download-verified")
        duration = await asyncio.to_thread(measure_duration_ms, partial)
        if duration is None:
            discard_partial(partial)
            raise NotAudioError("no MPEG audio frames found in the body", episode=episode.label)
        tagged = await self._tag(partial, episode, duration, journal=False)
        failpoint("tagged")
        # The audio was hashed as it streamed; only the new tag needs hashing now.
        digest = await asyncio.to_thread(tag_sha256, partial)
        target = await asyncio.to_thread(self.archive.commit, partial, step.path)
        failpoint("renamed")
        stat = await self._record(step, episode, downloaded, target, duration, digest)
        sidecar_path(partial).unlink(missing_ok=True)
        log.debug("%s: archived as %s (%d tag bytes)", episode.label, step.path,
                  tagged.tag_bytes)
        return Outcome(Status.DOWNLOADED, episode.source, episode, target, stat.st_size)

    async def _record(
        self,
        step: Step,
        episode: Episode,
        downloaded: Downloaded,
        target: Path,
        duration: int | None,
        tag_digest: str,
    ) -> os.stat_result:
        """Commit the manifest row of a file that now has its final name."""
        stat = await asyncio.to_thread(target.stat)
        now = now_iso()
        previous = step.record
        self.manifest.save(
            Record(
                guid=episode.guid,
                show_slug=episode.show_slug,
                source=str(episode.source),
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
                tag_hash=tag_fingerprint(episode, self.config.tags),
                duration_ms=duration,
                size_discrepancy=downloaded.size_discrepancy,
                archived_at=(previous.archived_at if previous and previous.archived_at
                             else now),
                updated_at=now,
            )
        )
        failpoint("recorded")
        return stat

    async def _adopt(self, step: Step, episode: Episode) -> Outcome | None:
        """Finish an episode whose verified file reached its final name just before a
        crash, without downloading it again: its audio must hash to what was verified."""
        assert step.path is not None
        partial = self.archive.partial_path(episode.guid)
        verified = verified_download(partial, self._url_hash(episode.audio_url))
        if verified is None or partial.exists():
            return None
        try:
            target = self.archive.existing_file(step.path)
        except FetcherError:
            return None
        if not target.is_file() or (
            await asyncio.to_thread(payload_sha256, target) != verified.audio_sha256
        ):
            return None
        log.info("%s: adopting %s, archived just before an interruption", episode.label,
                 step.path)

        async def finish() -> Outcome:
            duration = await asyncio.to_thread(measure_duration_ms, target)
            await self._tag(target, episode, duration, journal=True)
            digest = await asyncio.to_thread(tag_sha256, target)
            stat = await self._record(step, episode, verified, target, duration, digest)
            sidecar_path(partial).unlink(missing_ok=True)
            return Outcome(Status.DOWNLOADED, episode.source, episode, target, stat.st_size)

        return await _uninterrupted(finish())

    async def _recognise(self, step: Step, episode: Episode) -> Outcome | None:
        """Keep an archived file whose size changed but whose audio is what was
        archived (a tag rewrite stopped before the manifest learnt the new size): it is
        re-tagged and recorded, not downloaded again."""
        assert step.path is not None and step.record is not None
        try:
            target = self.archive.existing_file(step.path)
            digest = await asyncio.to_thread(payload_sha256, target)
        except (FetcherError, OSError):
            return None
        if digest != step.record.audio_sha256:
            return None
        log.info("%s: %s holds the archived audio; re-tagged, not downloaded", episode.label,
                 step.path)
        return await self._retag(step, episode)

    # --- only the metadata changed --------------------------------------------------

    async def _retag(self, step: Step, episode: Episode) -> Outcome:
        assert step.path is not None and step.record is not None
        target = self.archive.existing_file(step.path)
        duration = step.record.duration_ms
        if duration is None:
            duration = await asyncio.to_thread(measure_duration_ms, target)
        return await _uninterrupted(self._finish_retag(step, episode, target, duration))

    async def _finish_retag(
        self, step: Step, episode: Episode, target: Path, duration: int | None
    ) -> Outcome:
        assert step.record is not None
        await self._tag(target, episode, duration, journal=True)
        digest = await asyncio.to_thread(tag_sha256, target)
        stat = await asyncio.to_thread(target.stat)
        record = dataclasses.replace(
            step.record,
            show_slug=episode.show_slug,
            source=str(episode.source),
            url=step.record.url or redact_url(episode.audio_url),
            url_hash=step.record.url_hash or self._url_hash(episode.audio_url),
            expected_bytes=step.record.expected_bytes or episode.expected_bytes,
            file_bytes=stat.st_size,
            file_mtime_ns=stat.st_mtime_ns,
            tag_sha256=digest,
            tag_hash=tag_fingerprint(episode, self.config.tags),
            duration_ms=duration,
            updated_at=now_iso(),
            last_error=None,
            last_error_at=None,
        )
        self.manifest.save(record)
        return Outcome(Status.RETAGGED, episode.source, episode, target, stat.st_size)

    # --- tags and their pictures ----------------------------------------------------

    async def _tag(self, path: Path, episode: Episode, duration: int | None, *,
                   journal: bool) -> Tagged:
        from fetcher.tagging.writer import write_tags

        settings = self.config.tags
        cover, images = await self._images.for_episode(episode)
        return await asyncio.to_thread(
            write_tags, path, episode, duration_ms=duration, settings=settings, cover=cover,
            images=images, journal_dir=self.archive.journal_dir if journal else None,
        )

    def _url_hash(self, url: str) -> str:
        """The keyed hash that stands for *url* in the manifest and the sidecars."""
        hasher = self._hasher
        if hasher is None:
            hasher = self._hasher = self.archive.url_hasher() or url_digest
        return hasher(url)

    def _remember_failure(self, episode: Episode, message: str) -> None:
        with contextlib.suppress(FetcherError):
            if self.manifest.get(episode.guid) is not None:
                self.manifest.record_error(episode.guid, message, now_iso())
            else:
                self.manifest.save(
                    Record(episode.guid, episode.show_slug, str(episode.source),
                           redact_url(episode.audio_url), last_error=message,
                           last_error_at=now_iso(), url_hash=self._url_hash(episode.audio_url))
                )
