"""What an episode brings besides its audio: chapters fetched from a URL, transcripts.

- :class:`Chapters` fetches a Podcasting 2.0 chapters document only for episodes that
  need work, with a conditional GET against a small cache in ``.fetcher/chapters/``
  (publishers edit chapters, so every re-tag asks again). A broken document costs the
  chapters (a warning), never the episode; the feed's ``psc:chapters`` stay then.
- :func:`fetch_transcripts` downloads every offered transcript beside the audio as
  ``<audio stem>.<language>.<ext>``, checks that it is what its type says, writes it
  atomically and returns what the manifest records about it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from fetcher.errors import FetcherError, redact_url
from fetcher.model import Episode, Transcript, parse_chapters
from fetcher.safeio import fsync_directory, read_state, write_atomic

if TYPE_CHECKING:
    from fetcher.net.http import Http

log = logging.getLogger(__name__)

#: Chapters and transcripts larger than this are refused.
MAX_EXTRA_BYTES = 16 * 1024 * 1024

TRANSCRIPT_EXTENSIONS = {
    "text/vtt": "vtt", "application/srt": "srt", "application/x-subrip": "srt",
    "text/srt": "srt", "application/json": "json", "text/html": "html",
    "text/plain": "txt",
}


class Chapters:
    """Chapters documents for one run, each fetched at most once."""

    def __init__(self, cache_dir: Path | None):
        self.cache_dir = cache_dir
        self.http: Http | None = None

    async def resolve(self, episode: Episode) -> Episode:
        """*episode* with the chapters its ``chapters_url`` names (unchanged without one,
        or with its feed's chapters when the document cannot be had)."""
        if not episode.chapters_url or self.http is None:
            return episode
        data = await self.fetch(episode)
        if data is None:
            return episode
        try:
            raw = json.loads(data)
        except ValueError as exc:
            log.warning("%s: chapters at %s are not JSON (%s); the episode goes on without "
                        "them", episode.label, redact_url(episode.chapters_url), exc)
            return episode
        chapters, warnings = parse_chapters(raw)
        for warning in warnings:
            log.warning("%s: chapters: %s", episode.label, warning)
        if not chapters and episode.chapters:
            return episode  # an empty document: keep what the feed itself gave
        return dataclasses.replace(episode, chapters=tuple(chapters),
                                   chapters_source="podcast:chapters")

    async def fetch(self, episode: Episode) -> bytes | None:
        assert episode.chapters_url is not None and self.http is not None
        url = episode.chapters_url
        cache = self._cache_paths(url)
        headers: dict[str, str] = {}
        cached: dict[str, Any] | None = None
        if cache is not None:
            try:
                cached = json.loads(read_state(cache[0]))
                if isinstance(cached, dict) and cached.get("etag"):
                    headers["If-None-Match"] = str(cached["etag"])
            except (OSError, ValueError, FetcherError):
                cached = None
        try:
            response = await self.http.fetch_response(
                episode.label, url, max_bytes=MAX_EXTRA_BYTES, headers=headers,
                trust=episode.trust)
        except FetcherError as error:
            log.warning("%s: chapters skipped: %s", episode.label, error)
            return None
        if response.status == 304 and cache is not None and cached is not None:
            try:
                return read_state(cache[1], limit=MAX_EXTRA_BYTES)
            except (OSError, FetcherError):
                return None
        if response.status != 200:
            log.warning("%s: chapters skipped: HTTP %d", episode.label, response.status)
            return None
        if cache is not None:
            try:
                write_atomic(cache[1], response.body)
                write_atomic(cache[0], json.dumps({"etag": response.headers.get("etag")})
                             .encode())
            except OSError as exc:
                log.debug("chapters cache not written: %s", exc)
        return response.body

    def _cache_paths(self, url: str) -> tuple[Path, Path] | None:
        if self.cache_dir is None:
            return None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(url.encode()).hexdigest()[:32]
        return self.cache_dir / f"{name}.meta", self.cache_dir / f"{name}.json"


@dataclass(frozen=True, slots=True)
class SideFile:
    """A file kept beside an episode's audio, as the manifest records it."""

    kind: str
    path: str
    sha256: str
    bytes: int
    url_hash: str | None = None
    #: When fetching it failed (then the file is absent; the next try is a day later).
    failed_at: str | None = None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def expected_transcripts(audio: PurePosixPath, episode: Episode) -> dict[str, Transcript]:
    """The transcripts an archived episode should have beside it, by file name (the
    first offer of a language and type wins)."""
    wanted: dict[str, Transcript] = {}
    for transcript in episode.transcripts:
        wanted.setdefault(transcript_name(audio, transcript), transcript)
    return wanted


def missing_transcripts(files_json: str, audio: PurePosixPath, episode: Episode,
                        url_hash: Callable[[str], str] | None) -> bool:
    """True when a transcript *episode* offers is neither beside its audio nor failed
    within the last day (by the manifest's record of its files)."""
    if not episode.transcripts:
        return False
    try:
        files = json.loads(files_json or "[]")
    except ValueError:
        return True
    recent = datetime.now(UTC) - timedelta(days=1)
    have = set()
    for entry in files if isinstance(files, list) else []:
        if not isinstance(entry, dict) or entry.get("kind") != "transcript":
            continue
        failed = entry.get("failed_at")
        if failed:
            try:
                if datetime.fromisoformat(str(failed)) < recent:
                    continue
            except ValueError:
                continue
        have.add(PurePosixPath(str(entry.get("path", ""))).name)
    return not set(expected_transcripts(audio, episode)) <= have


def transcript_name(audio: Path | PurePosixPath, transcript: Transcript) -> str:
    """``<audio stem>.<language>.<ext>`` (no language: ``<audio stem>.<ext>``)."""
    kind = (transcript.type or "").split(";")[0].strip().lower()
    ext = TRANSCRIPT_EXTENSIONS.get(kind)
    if ext is None:
        suffix = transcript.url.split("?", 1)[0].rsplit(".", 1)[-1].lower()
        ext = suffix if suffix in ("vtt", "srt", "json", "html", "txt") else "txt"
    language = re.sub(r"[^A-Za-z0-9-]", "", transcript.language or "")[:20]
    return f"{audio.stem}.{language}.{ext}" if language else f"{audio.stem}.{ext}"


def check_transcript(data: bytes, name: str) -> str | None:
    """Why *data* is not the transcript its name promises, or None."""
    if not data.strip():
        return "empty"
    head = data.lstrip()[:512].lower()
    if name.endswith(".json"):
        try:
            json.loads(data)
        except ValueError:
            return "not JSON"
    elif name.endswith(".vtt") and not data.lstrip(b"\xef\xbb\xbf").startswith(b"WEBVTT"):
        return "not WebVTT (no WEBVTT header)"
    elif name.endswith(".srt") and b"-->" not in data[:4096]:
        return "not SRT (no cue times)"
    elif not name.endswith(".html") and (head.startswith(b"<!doctype html")
                                         or head.startswith(b"<html")):
        return "an HTML page"
    return None


async def fetch_transcripts(http: Http, episode: Episode, audio: Path, relative: PurePosixPath,
                            url_hash: Callable[[str], str],
                            temp_dir: Path) -> list[SideFile]:
    """Download *episode*'s transcripts beside *audio* (archive-relative: *relative*);
    failures are warnings, and the next run asks again."""
    import asyncio

    files: list[SideFile] = []
    names: set[str] = set()
    for transcript in episode.transcripts:
        name = transcript_name(audio, transcript)
        if name in names:
            continue  # two offers of one language and type: the first wins
        names.add(name)
        relative_name = str(relative.with_name(name))
        failed = SideFile("transcript", relative_name, "", 0, url_hash(transcript.url),
                          failed_at=datetime.now(UTC).isoformat(timespec="seconds"))
        try:
            data = await http.fetch_small(episode.label, transcript.url,
                                          max_bytes=MAX_EXTRA_BYTES, trust=episode.trust)
        except FetcherError as error:
            log.warning("%s: transcript %s not fetched: %s", episode.label, name, error)
            files.append(failed)
            continue
        problem = check_transcript(data, name)
        if problem is not None:
            log.warning("%s: transcript %s refused: %s", episode.label, name, problem)
            files.append(failed)
            continue
        target = audio.with_name(name)
        await asyncio.to_thread(place_file, data, target, temp_dir)
        files.append(SideFile("transcript", relative_name,
                              hashlib.sha256(data).hexdigest(), len(data),
                              url_hash(transcript.url)))
    return files


def place_file(data: bytes, target: Path, temp_dir: Path) -> None:
    """Write *data* under *target* atomically (staged in *temp_dir*, same filesystem)."""
    temp_dir.mkdir(parents=True, exist_ok=True)
    staged = temp_dir / (hashlib.sha1(str(target).encode()).hexdigest() + ".side")
    write_atomic(staged, data)
    if target.is_symlink():
        staged.unlink()
        raise FetcherError(f"{target}: is a symbolic link; refusing to replace it")
    staged.replace(target)
    fsync_directory(target.parent)
