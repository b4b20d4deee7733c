"""Tags for audio that is not MP3 (AAC/M4A, Ogg Vorbis, Opus, FLAC), with mutagen.

Each format gets the metadata mutagen supports for it: title, show (album), hosts
(artist), date, genre "Podcast", description, episode number, the guid and the cover
where the format has a picture field. Chapters are not written into these files (no
tag format that players agree on); the pipeline keeps them as a Podcasting 2.0 JSON
sidecar instead. mutagen rewrites such files as it saves, so an archived file is
re-tagged through a copy that replaces it only when complete.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

from fetcher.errors import TagError
from fetcher.failpoints import failpoint
from fetcher.model import Chapter, Episode
from fetcher.safeio import fsync_directory, fsync_file
from fetcher.tagging.spec import picture_mime


def duration_ms(path: Path) -> int | None:
    """The play time mutagen reads from the file's own header, or None."""
    import mutagen

    try:
        audio = mutagen.File(path)
    except Exception as exc:
        raise TagError(path, f"cannot read the audio: {exc}") from exc
    if audio is None or audio.info is None or not audio.info.length:
        return None
    return round(float(audio.info.length) * 1000)


@contextlib.contextmanager
def _tag_errors(path: Path) -> Iterator[None]:
    """Any failure to tag *path* as a TagError naming it."""
    try:
        yield
    except TagError:
        raise
    except Exception as exc:
        raise TagError(path, f"cannot write tags: {type(exc).__name__}: {exc}") from exc


def write_other_tags(path: Path, episode: Episode, cover: bytes | None) -> None:
    """Tag *path* (a file not yet archived) in place."""
    with _tag_errors(path):
        _write(path, episode, cover)


def retag_archived(path: Path, episode: Episode, cover: bytes | None, *,
                   journal_dir: Path) -> tuple[str, Path]:
    """Re-tag the archived file *path* through a copy in *journal_dir* that replaces it
    under a journal (:func:`fetcher.journal.write_replacement_journal`); returns the new
    file's SHA-256 and the journal, to be finished once the manifest row holds it."""
    from fetcher.audio import file_sha256
    from fetcher.journal import TEMP_SUFFIX, journal_name, write_replacement_journal

    journal_dir.mkdir(parents=True, exist_ok=True)
    target = journal_dir / (journal_name(path) + TEMP_SUFFIX)
    try:
        with _tag_errors(path):
            shutil.copyfile(path, target)
            _write(target, episode, cover)
            fsync_file(target)
            digest = file_sha256(target)
            journal = write_replacement_journal(journal_dir, path, guid=episode.guid,
                                                column="audio_sha256", digest=digest)
            target.replace(path)
            fsync_directory(path.parent)
        failpoint("retag-rewritten")
        return digest, journal
    finally:
        target.unlink(missing_ok=True)


def _write(path: Path, episode: Episode, cover: bytes | None) -> None:
    import mutagen
    from mutagen.flac import FLAC, Picture
    from mutagen.mp4 import MP4, MP4Cover

    audio = mutagen.File(path)
    if audio is None:
        raise TagError(path, "not an audio format mutagen can tag")
    when = episode.date.astimezone(UTC)
    artist = ", ".join(episode.hosts) if episode.hosts else episode.show_name
    if isinstance(audio, MP4):
        if audio.tags is None:
            audio.add_tags()
        tags: Any = audio.tags
        tags["\xa9nam"] = [episode.title]
        tags["\xa9alb"] = [episode.show_name]
        tags["\xa9ART"] = [artist]
        tags["aART"] = [episode.show_name]
        tags["\xa9day"] = [when.strftime("%Y-%m-%dT%H:%M:%SZ")]
        tags["\xa9gen"] = ["Podcast"]
        tags["pcst"] = True
        if episode.description or episode.show_notes:
            tags["desc"] = [episode.description or episode.show_notes[:255]]
            tags["ldes"] = [episode.show_notes or episode.description]
        tags["egid"] = [episode.guid]
        if isinstance(episode.episode, int):
            tags["trkn"] = [(episode.episode, 0)]
        if episode.season is not None:
            tags["tvsn"] = [episode.season]
        mime = picture_mime(cover) if cover else None
        if cover and mime:
            kind = MP4Cover.FORMAT_PNG if mime == "image/png" else MP4Cover.FORMAT_JPEG
            tags["covr"] = [MP4Cover(cover, imageformat=kind)]
        audio.save()
        return
    if audio.tags is None:
        audio.add_tags()
    comments: Any = audio.tags
    comments["title"] = [episode.title]
    comments["album"] = [episode.show_name]
    comments["artist"] = [artist]
    comments["albumartist"] = [episode.show_name]
    comments["date"] = [when.strftime("%Y-%m-%d")]
    comments["genre"] = ["Podcast"]
    comments["podcast_guid"] = [episode.guid]
    if episode.show_notes or episode.description:
        comments["comment"] = [episode.show_notes or episode.description]
    if isinstance(episode.episode, int):
        comments["tracknumber"] = [str(episode.episode)]
    mime = picture_mime(cover) if cover else None
    if cover and mime:
        picture = Picture()
        picture.type, picture.mime, picture.data = 3, mime, cover
        if isinstance(audio, FLAC):
            audio.clear_pictures()
            audio.add_picture(picture)
        else:
            comments["metadata_block_picture"] = [
                base64.b64encode(picture.write()).decode("ascii")]
    audio.save()


def chapters_json(chapters: list[Chapter], episode: Episode) -> bytes:
    """A Podcasting 2.0 JSON chapters document for a sidecar file."""
    document = {
        "version": "1.2.0",
        "title": episode.title,
        "podcastName": episode.show_name,
        "chapters": [
            {key: value for key, value in (
                ("startTime", c.start_ms / 1000),
                ("endTime", c.end_ms / 1000 if c.end_ms is not None else None),
                ("title", c.title), ("url", c.url), ("img", c.img),
                ("toc", None if c.toc else False)) if value is not None}
            for c in chapters
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
