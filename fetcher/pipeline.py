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
import logging
import signal
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fetcher.audio import kind_for, payload_sha256
from fetcher.duration import measure_duration_ms
from fetcher.errors import DownloadError, FetcherError, is_permanent, redact_url, shown_source
from fetcher.events import EpisodeDone, Outcome, Status
from fetcher.finish import Finisher, uninterrupted
from fetcher.model import Episode
from fetcher.plan import Action, Plan, Step
from fetcher.staging import sidecar_path, verified_download
from fetcher.store.local import now_iso
from fetcher.store.manifest import Record

if TYPE_CHECKING:
    # The download and tag stages (httpx, tenacity, mutagen) are imported only when
    # there is work, so that a cron run with nothing to do starts fast.
    pass

log = logging.getLogger(__name__)


def static_outcome(step: Step, root: Path | None = None) -> Outcome:
    """The outcome of a step that needs no work (paths under *root*, the archive)."""
    if step.action is Action.UP_TO_DATE:
        assert step.record is not None
        path = root / step.path if root is not None and step.path is not None else None
        return Outcome(Status.UP_TO_DATE, step.source, step.episode, path,
                       step.record.file_bytes, reason=step.reason)
    if step.action is Action.SKIP:
        return Outcome(Status.SKIPPED, step.source, step.episode, reason=step.reason)
    if step.action is Action.DEFER:
        assert step.record is not None
        return Outcome(Status.DEFERRED, step.source, step.episode, reason=step.reason,
                       error=step.record.last_error, next_try=step.record.next_try)
    return Outcome(Status.FAILED, step.source, step.episode, error=step.reason)


def host_of_url(url: str) -> str:
    try:
        return urlsplit(url).netloc or url
    except ValueError:
        return url


class Pipeline(Finisher):
    """Runs a plan's work; see the module docstring."""

    async def run(self, plan: Plan, handle_signals: bool) -> tuple[list[Outcome], bool]:
        outcomes: dict[int, Outcome] = {}
        for index, step in enumerate(plan.steps):
            if step.action not in (Action.DOWNLOAD, Action.RETAG):
                outcome = static_outcome(step, self.archive.root)
                outcomes[index] = outcome
                if step.action is Action.INVALID and step.episode is not None:
                    self._remember_failure(step.episode, step.reason)
        work = [(i, s) for i, s in enumerate(plan.steps) if i not in outcomes]
        interrupted = False
        if work:
            from fetcher.net.download import Downloader

            async with Downloader(self.config.download, on_event=self.on_event) as downloader:
                self._downloader = downloader
                self._images.http = downloader
                self._chapters.http = downloader
                tasks = {i: asyncio.create_task(self._run_step(step)) for i, step in work}
                stop = self._install_signals(tasks.values()) if handle_signals else None
                try:
                    results = await asyncio.gather(*tasks.values(), return_exceptions=True)
                finally:
                    if stop is not None:
                        self._remove_signals()
                    self.close_finishing()
                interrupted = bool(stop and stop.is_set())
                for (index, step), result in zip(work, results, strict=True):
                    if isinstance(result, Outcome):
                        outcomes[index] = result
                    elif isinstance(result, asyncio.CancelledError):
                        outcomes[index] = Outcome(Status.INTERRUPTED, step.source,
                                                  step.episode,
                                                  reason="interrupted; resumes next run")
                    else:
                        raise result
        return [outcomes[i] for i in sorted(outcomes)], interrupted

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
            # Chapters a feed names by URL are fetched only now, for work that needs them.
            episode = await self._chapters.resolve(episode)
            if step.action is Action.DOWNLOAD:
                outcome = await self._download(step, episode)
            else:
                outcome = await self._retag(step, episode)
        except FetcherError as error:
            self._remember_failure(episode, str(error), error)
            cause = None
            if isinstance(error, DownloadError) and error.unreachable:
                cause = f"{host_of_url(error.url)} unreachable"
            outcome = Outcome(Status.FAILED, episode.source, episode, error=str(error),
                              cause=cause)
        except OSError as error:
            message = f"{episode.label}: {error.strerror or error}"
            if error.filename:
                message += f" ({error.filename})"
            self._remember_failure(episode, message)
            outcome = Outcome(Status.FAILED, episode.source, episode, error=message)
        self.on_event(EpisodeDone(episode.label, outcome))
        if self.config.hooks.after_episode and outcome.status in (Status.DOWNLOADED,
                                                                  Status.RETAGGED):
            from fetcher.hooks import run_after_episode

            await run_after_episode(self.config.hooks, outcome)
        return outcome

    def _remember_failure(self, episode: Episode, message: str,
                          error: FetcherError | None = None) -> None:
        """Record a failure; a permanent one gets its next try (1 day, doubling to 30)."""
        with contextlib.suppress(FetcherError):
            record = self.manifest.get(episode.guid)
            next_try = None
            if error is not None and is_permanent(error):
                failures = record.failures if record is not None else 0
                wait = timedelta(days=min(2 ** failures, 30))
                next_try = (datetime.now(UTC) + wait).isoformat(timespec="seconds")
            if record is not None:
                self.manifest.record_error(episode.guid, message, now_iso(),
                                           next_try=next_try)
            else:
                self.manifest.save(
                    Record(episode.guid, episode.show_slug, shown_source(episode.source),
                           redact_url(episode.audio_url), last_error=message,
                           last_error_at=now_iso(), url_hash=self._url_hash(episode.audio_url),
                           failures=1 if next_try else 0, next_try=next_try)
                )

    # --- a new or changed episode -----------------------------------------------------

    async def _download(self, step: Step, episode: Episode) -> Outcome:
        assert self._downloader is not None and step.path is not None
        from fetcher.net.download import DownloadRequest
        from fetcher.tagging.frames import SizedTag, size_tag

        adopted = await self._adopt(step, episode)
        if adopted is not None:
            return adopted
        if step.check_audio and step.record is not None and step.record.format == "mp3":
            recognised = await self._recognise(step, episode)
            if recognised is not None:
                return recognised
        partial = self.archive.partial_path(episode.guid)
        # An MP3's tag is sized before the download so that it can be written into room
        # left at the front of the partial file: the audio is written once, never copied.
        sized = SizedTag(0, ())
        if kind_for(episode.audio_type, episode.audio_url) == "mp3":
            cover, images = await self._images.for_episode(episode)
            sized = size_tag(episode, self.config.tags, cover, images)  # ~0.1 ms
        downloaded = await self._downloader.fetch(
            DownloadRequest(episode.label, episode.audio_url, partial, episode.expected_bytes,
                            reserve=sized.reserve, url_id=self._url_hash(episode.audio_url),
                            trust=episode.trust, size_is_hint=episode.size_is_hint)
        )
        return await uninterrupted(self._finish_download(step, episode, downloaded,
                                                         sized.metadata or None))

    async def _adopt(self, step: Step, episode: Episode) -> Outcome | None:
        """Finish an episode whose verified file reached its final name just before a
        crash, without downloading it again: its audio must hash to what was verified."""
        assert step.path is not None
        partial = self.archive.partial_path(episode.guid)
        if not self._left_behind(sidecar_path(partial)) or partial.exists():
            return None  # the common case: nothing of it was in the partial directory
        verified = verified_download(partial, self._url_hash(episode.audio_url))
        if verified is None:
            return None
        try:
            target = self.archive.existing_file(step.path)
        except FetcherError:
            return None
        if not target.is_file() or (
            await self._blocking(payload_sha256, target) != verified.audio_sha256
        ):
            return None
        log.info("%s: adopting %s, archived just before an interruption", episode.label,
                 step.path)

        async def finish() -> Outcome:
            duration = await self._blocking(measure_duration_ms, target)
            tagged = await self._tag(target, episode, duration, journal=True)
            stat = await self._record(step, episode, verified, target, duration,
                                      tagged.tag_sha256)
            sidecar_path(partial).unlink(missing_ok=True)
            return Outcome(Status.DOWNLOADED, episode.source, episode, target, stat.st_size)

        return await uninterrupted(finish())

    def _left_behind(self, path: Path) -> bool:
        """Whether *path*, in the partial directory, was there when this run's first
        download began (one listing of the directory, not a stat per episode)."""
        if self._found is None:
            try:
                self._found = frozenset(p.name for p in path.parent.iterdir())
            except OSError:
                self._found = frozenset()
        return path.name in self._found

    async def _recognise(self, step: Step, episode: Episode) -> Outcome | None:
        """Keep an archived file whose size changed but whose audio is what was
        archived (a tag rewrite stopped before the manifest learnt the new size): it is
        re-tagged and recorded, not downloaded again."""
        assert step.path is not None and step.record is not None
        try:
            target = self.archive.existing_file(step.path)
            digest = await self._blocking(payload_sha256, target)
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
        if duration is None and step.record.format == "mp3":
            duration = await self._blocking(measure_duration_ms, target)
        return await uninterrupted(self._finish_retag(step, episode, target, duration))
